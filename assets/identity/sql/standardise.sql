-- identity.standardised_record: one row per source record (grain: record_key), holding the
-- folded, validated values that linking compares. Reads identity.source_person (the
-- standard schema; ${source} and ${target} let a run standardise only changed rows) and
-- identity.nickname (formal, nickname). Needs sources/sql/macros.sql.
--
-- Names: accents and letters Windows-1252 cannot hold are folded to ASCII ('?' left by the
-- legacy system is dropped), case and spacing are normalised, apostrophes removed so that
-- O'Brien = OBrien. A double-barrelled surname keeps its parts in surname_parts so that
-- a form that kept one half still agrees.
-- Birth dates: dob_swapped is the date with day and month exchanged, where that is a date
-- and differs, because 02/05 typed as 05/02 is the commonest date error.
-- Postcodes: a UK postcode is validated and split into sector and district; a code of 4 to 6
-- digits (the form most other countries use: a person table from elsewhere) is kept as
-- given, with no sector or district; anything else, placeholders included, is no postcode.
-- Identifiers: an NHS number failing modulus 11 or a UPN failing its check letter is
-- kept only as a flag (nhs_number_invalid, upn_invalid), never as a link key.
CREATE OR REPLACE MACRO name_folded(v) AS nullif(trim(regexp_replace(regexp_replace(
    lower(strip_accents(translate(v, 'łŁøØđĐßșȘşŞțȚţŢ', 'lLoOdDsSsSsStTtT'))),
    '[^a-z\s-]', '', 'g'), '[\s-]+', ' ', 'g')), '');

CREATE OR REPLACE MACRO address_folded(v) AS nullif(trim(regexp_replace(regexp_replace(
    lower(strip_accents(v)), '[^a-z0-9\s]', ' ', 'g'), '\s+', ' ', 'g')), '');

CREATE OR REPLACE MACRO sex_code(v) AS CASE upper(trim(v))
    WHEN 'M' THEN 'M' WHEN 'MALE' THEN 'M' WHEN '1' THEN 'M'
    WHEN 'F' THEN 'F' WHEN 'FEMALE' THEN 'F' WHEN '2' THEN 'F' END;

CREATE OR REPLACE TABLE ${target} AS
WITH folded AS (
    SELECT
        system || '/' || table_name || '/' || record_id AS record_key,
        system, table_name, record_id,
        name_folded(forename) AS forename_all,
        name_folded(middle_names) AS middle_all,
        name_folded(surname) AS surname_all,
        name_folded(alt_forename) AS alt_forename,
        name_folded(alt_surname) AS alt_surname,
        dob, coalesce(dob_estimated, false) AS dob_estimated,
        sex_code(sex) AS sex,
        postcode_folded(postcode) AS postcode_f,
        address_folded(address) AS address,
        nullif(regexp_replace(CAST(uprn AS VARCHAR), '\D', '', 'g'), '') AS uprn,
        nhs_digits(nhs_number) AS nhs_d,
        upper(trim(upn)) AS upn_u,
        upper(trim(former_upn)) AS former_upn_u,
        nullif(trim(CAST(csc_id AS VARCHAR)), '') AS csc_id,
        coalesce(is_deleted, false) AS is_deleted,
        -- the source row as delivered: an unchanged one is not standardised again
        hash(sp) AS source_hash,
        CASE lower(trim(role)) WHEN 'child' THEN 'child' WHEN 'adult' THEN 'adult' END AS role
    FROM ${source} AS sp
),
split AS (
    SELECT *,
        split_part(forename_all, ' ', 1) AS forename,
        split_part(alt_forename, ' ', 1) AS alt_first,
        nullif(concat_ws(' ', nullif(trim(substr(forename_all, length(split_part(forename_all, ' ', 1)) + 1)), ''), middle_all), '') AS middle_names,
        replace(surname_all, ' ', '') AS surname,
        string_split(surname_all, ' ') AS surname_parts
    FROM folded
),
formal_names AS (
    SELECT nickname, list(formal) AS formals FROM identity.nickname GROUP BY nickname
),
grouped AS (
    SELECT s.*,
        -- every formal name this forename (or the name the child is known by) could stand for
        list_distinct(list_filter([s.forename, s.alt_first] || coalesce(a.formals, []) || coalesce(b.formals, []),
                                  lambda x: x IS NOT NULL AND x <> '')) AS forename_group
    FROM split s
    LEFT JOIN formal_names a ON a.nickname = s.forename
    LEFT JOIN formal_names b ON b.nickname = s.alt_first
)
SELECT
    record_key, system, table_name, record_id,
    nullif(forename, '') AS forename,
    middle_names,
    nullif(surname, '') AS surname,
    surname_parts,
    alt_forename,
    replace(alt_surname, ' ', '') AS alt_surname,
    forename_group,
    CASE WHEN dob_estimated THEN NULL ELSE dob END AS dob,
    CASE WHEN dob_estimated THEN dob END AS dob_approximate,
    CASE WHEN NOT dob_estimated AND day(dob) <= 12 AND day(dob) <> month(dob)
         THEN make_date(year(dob), day(dob), month(dob)) END AS dob_swapped,
    year(dob) AS birth_year,
    sex,
    CASE WHEN folded_postcode_is_wellformed(postcode_f) AND NOT folded_postcode_is_placeholder(postcode_f)
         THEN left(postcode_f, length(postcode_f) - 3) || ' ' || right(postcode_f, 3)
         WHEN regexp_full_match(postcode_f, '[0-9]{4,6}') AND NOT folded_postcode_is_placeholder(postcode_f)
         THEN postcode_f END AS postcode,
    CASE WHEN folded_postcode_is_wellformed(postcode_f) AND NOT folded_postcode_is_placeholder(postcode_f)
         THEN left(postcode_f, length(postcode_f) - 3) || ' ' || left(right(postcode_f, 3), 1) END AS postcode_sector,
    CASE WHEN folded_postcode_is_wellformed(postcode_f) AND NOT folded_postcode_is_placeholder(postcode_f)
         THEN left(postcode_f, length(postcode_f) - 3) END AS postcode_district,
    address,
    uprn,
    CASE WHEN nhs_digits_are_valid(nhs_d) THEN nhs_d END AS nhs_number,
    nhs_d IS NOT NULL AND NOT coalesce(nhs_digits_are_valid(nhs_d), false) AS nhs_number_invalid,
    CASE WHEN upn_letters_are_valid(upn_u) THEN upn_u END AS upn,
    upn_u IS NOT NULL AND NOT coalesce(upn_letters_are_valid(upn_u), false) AS upn_invalid,
    CASE WHEN upn_letters_are_valid(former_upn_u) THEN former_upn_u END AS former_upn,
    csc_id,
    role,
    is_deleted,
    source_hash,
    -- what linking compares: a record whose hash is unchanged needs no new scores
    hash(forename, middle_names, surname, alt_forename, alt_surname, dob, dob_estimated, sex,
         postcode_f, address, uprn, nhs_d, upn_u, former_upn_u, csc_id, role) AS record_hash
FROM grouped;
