-- Identifier rules from CODES.md as DuckDB macros, so validation runs in SQL over whole
-- tables. They mirror sources/identifiers.py (tests keep the two in agreement).

-- NHS number: digits only once the spaces and dashes people type are removed.
CREATE OR REPLACE MACRO nhs_digits(v) AS regexp_replace(v, '[\s-]', '', 'g');

-- DuckDB evaluates both sides of AND, so every cast is a TRY_CAST and NULL means false.
CREATE OR REPLACE MACRO nhs_number_is_valid(v) AS coalesce((
    regexp_full_match(nhs_digits(v), '[0-9]{10}')
    AND (
        (11 - list_sum(list_transform(range(9), lambda i: TRY_CAST(substr(nhs_digits(v), i + 1, 1) AS INTEGER) * (10 - i))) % 11) % 11
    ) = TRY_CAST(substr(nhs_digits(v), 10, 1) AS INTEGER)
    AND (11 - list_sum(list_transform(range(9), lambda i: TRY_CAST(substr(nhs_digits(v), i + 1, 1) AS INTEGER) * (10 - i))) % 11) <> 10
), false);

-- UPN: check letter, LA code, establishment, year, serial (last may be a letter).
CREATE OR REPLACE MACRO upn_alphabet() AS 'ABCDEFGHJKLMNPQRTUVWXYZ';

CREATE OR REPLACE MACRO upn_is_valid(v) AS coalesce((
    regexp_full_match(upper(trim(v)), '[A-HJ-NP-RT-Z][0-9]{11}[0-9A-HJ-NP-RT-Z]')
    AND substr(upper(trim(v)), 1, 1) = substr(upn_alphabet(), CAST(1 + list_sum(list_transform(range(12), lambda i:
        (CASE WHEN regexp_full_match(substr(upper(trim(v)), i + 2, 1), '[0-9]')
              THEN TRY_CAST(substr(upper(trim(v)), i + 2, 1) AS INTEGER)
              ELSE instr(upn_alphabet(), substr(upper(trim(v)), i + 2, 1)) - 1 END) * (i + 2))) % 23 AS BIGINT), 1)
), false);

-- Postcode: the shape of a UK postcode after folding case and spaces.
CREATE OR REPLACE MACRO postcode_folded(v) AS upper(regexp_replace(trim(v), '\s+', '', 'g'));
CREATE OR REPLACE MACRO postcode_is_wellformed(v) AS
    regexp_full_match(postcode_folded(v), '[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][ABD-HJLNP-UW-Z]{2}');
-- ZZ99 pseudo postcodes stand for no fixed abode, not for a place.
CREATE OR REPLACE MACRO postcode_is_placeholder(v) AS
    postcode_folded(v) LIKE 'ZZ99%' OR regexp_full_match(postcode_folded(v), 'X+|0+|NFA|UNKNOWN|N/?A');
