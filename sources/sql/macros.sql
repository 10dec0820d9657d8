-- Identifier rules from CODES.md as DuckDB macros, so validation runs in SQL over whole
-- tables. They mirror sources/identifiers.py (tests keep the two in agreement).

-- NHS number: digits only once the spaces and dashes people type are removed.
CREATE OR REPLACE MACRO nhs_digits(v) AS regexp_replace(v, '[\s-]', '', 'g');

-- DuckDB evaluates both sides of AND, so nothing here may fail on bad input; NULL
-- means false. Digits are read by their character code (ascii('0') = 48).
-- The weighted sums are written out term by term: a list lambda per row is ~10x slower.
CREATE OR REPLACE MACRO nhs_check_sum(d) AS
    (ascii(substr(d, 1, 1)) - 48) * 10 + (ascii(substr(d, 2, 1)) - 48) * 9 + (ascii(substr(d, 3, 1)) - 48) * 8 + (ascii(substr(d, 4, 1)) - 48) * 7 + (ascii(substr(d, 5, 1)) - 48) * 6 + (ascii(substr(d, 6, 1)) - 48) * 5 + (ascii(substr(d, 7, 1)) - 48) * 4 + (ascii(substr(d, 8, 1)) - 48) * 3 + (ascii(substr(d, 9, 1)) - 48) * 2;

CREATE OR REPLACE MACRO nhs_digits_are_valid(d) AS coalesce(
    regexp_full_match(d, '[0-9]{10}')
    AND (11 - nhs_check_sum(d) % 11) <> 10
    AND (11 - nhs_check_sum(d) % 11) % 11 = ascii(substr(d, 10, 1)) - 48, false);

CREATE OR REPLACE MACRO nhs_number_is_valid(v) AS nhs_digits_are_valid(nhs_digits(v));

-- UPN: check letter, LA code, establishment, year, serial (the last may be a letter).
-- A character's value is its place in '0123456789' or in the check-letter alphabet.
CREATE OR REPLACE MACRO upn_alphabet() AS 'ABCDEFGHJKLMNPQRTUVWXYZ';

CREATE OR REPLACE MACRO upn_value(c) AS
    CASE WHEN c BETWEEN '0' AND '9' THEN ascii(c) - 48 ELSE instr(upn_alphabet(), c) - 1 END;

CREATE OR REPLACE MACRO upn_letters_are_valid(u) AS coalesce(
    regexp_full_match(u, '[A-HJ-NP-RT-Z][0-9]{11}[0-9A-HJ-NP-RT-Z]')
    AND substr(u, 1, 1) = substr(upn_alphabet(),
        CAST(1 + (
        upn_value(substr(u, 2, 1)) * 2
        + upn_value(substr(u, 3, 1)) * 3
        + upn_value(substr(u, 4, 1)) * 4
        + upn_value(substr(u, 5, 1)) * 5
        + upn_value(substr(u, 6, 1)) * 6
        + upn_value(substr(u, 7, 1)) * 7
        + upn_value(substr(u, 8, 1)) * 8
        + upn_value(substr(u, 9, 1)) * 9
        + upn_value(substr(u, 10, 1)) * 10
        + upn_value(substr(u, 11, 1)) * 11
        + upn_value(substr(u, 12, 1)) * 12
        + upn_value(substr(u, 13, 1)) * 13) % 23 AS BIGINT), 1),
    false);

CREATE OR REPLACE MACRO upn_is_valid(v) AS upn_letters_are_valid(upper(trim(v)));

-- Postcode: the shape of a UK postcode once case and spaces are folded away.
CREATE OR REPLACE MACRO postcode_folded(v) AS upper(regexp_replace(trim(v), '\s+', '', 'g'));
CREATE OR REPLACE MACRO folded_postcode_is_wellformed(f) AS
    regexp_full_match(f, '[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][ABD-HJLNP-UW-Z]{2}');
-- ZZ99 pseudo postcodes stand for no fixed abode, not for a place.
CREATE OR REPLACE MACRO folded_postcode_is_placeholder(f) AS
    f LIKE 'ZZ99%' OR regexp_full_match(f, 'X+|0+|NFA|UNKNOWN|N/?A');
CREATE OR REPLACE MACRO postcode_is_wellformed(v) AS folded_postcode_is_wellformed(postcode_folded(v));
CREATE OR REPLACE MACRO postcode_is_placeholder(v) AS folded_postcode_is_placeholder(postcode_folded(v));
