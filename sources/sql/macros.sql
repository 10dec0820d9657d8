-- Identifier rules from CODES.md as DuckDB macros, so validation runs in SQL over whole
-- tables. They mirror sources/identifiers.py (tests keep the two in agreement).

-- NHS number: digits only once the spaces and dashes people type are removed.
CREATE OR REPLACE MACRO nhs_digits(v) AS regexp_replace(v, '[\s-]', '', 'g');

-- DuckDB evaluates both sides of AND, so nothing here may fail on bad input; NULL
-- means false. Digits are read by their character code (ascii('0') = 48).
CREATE OR REPLACE MACRO nhs_check_sum(d) AS
    list_sum(list_transform(range(9), lambda i: (ascii(substr(d, i + 1, 1)) - 48) * (10 - i)));

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
        CAST(1 + list_sum(list_transform(range(12), lambda i: upn_value(substr(u, i + 2, 1)) * (i + 2))) % 23 AS BIGINT), 1),
    false);

CREATE OR REPLACE MACRO upn_is_valid(v) AS upn_letters_are_valid(upper(trim(v)));

-- Postcode: the shape of a UK postcode after folding case and spaces.
CREATE OR REPLACE MACRO postcode_folded(v) AS upper(regexp_replace(trim(v), '\s+', '', 'g'));
CREATE OR REPLACE MACRO postcode_is_wellformed(v) AS
    regexp_full_match(postcode_folded(v), '[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][ABD-HJLNP-UW-Z]{2}');
-- ZZ99 pseudo postcodes stand for no fixed abode, not for a place.
CREATE OR REPLACE MACRO postcode_is_placeholder(v) AS
    postcode_folded(v) LIKE 'ZZ99%' OR regexp_full_match(postcode_folded(v), 'X+|0+|NFA|UNKNOWN|N/?A');
