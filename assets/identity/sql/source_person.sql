-- identity.source_person: every person-bearing source record, one row per record, in the
-- engine's standard schema (the same columns `earlyhelp link` reads from a file).
-- Grain: (system, table_name, record_id) as in CONTRACT.md's ground-truth section.
-- Each record is taken as the system last delivered it (its newest history version), so a
-- record deleted or merged away later still gets a person_key for its past events. Its
-- names, identifiers and addresses (rows of other tables) are those delivered with that
-- version: the rows whose history ends when the record's does (is_deleted marks the last
-- version of a record that later vanished; it does not make what was delivered unknown).
-- first_delivered is the extract date of the drop that first held the record.
-- role is 'child' or 'adult' where the source says so (a MASH contact is about a child,
-- a RelatedPerson is a parent), else NULL. Values stay as the source wrote them; standardise.sql folds and validates them.
-- Defined as the temporary view source_person_now: engine.read_source_records writes to
-- identity.source_person only the rows that differ from the last run's.
CREATE OR REPLACE TEMP VIEW source_person_now AS
WITH
pupils AS (
    SELECT *, min(valid_from) OVER (PARTITION BY ONEPupilID) AS first_delivered FROM history.education__pupils
    QUALIFY row_number() OVER (PARTITION BY ONEPupilID ORDER BY valid_from DESC) = 1
),
patients AS (
    SELECT *, coalesce(valid_to, 'infinity'::DATE) AS held_until,
           min(valid_from) OVER (PARTITION BY patient_id) AS first_delivered
    FROM history.health__patients
    QUALIFY row_number() OVER (PARTITION BY patient_id ORDER BY valid_from DESC) = 1
),
patient_names AS (
    -- official name first; a 'usual' or 'nickname' name is what the family calls the child.
    -- A name changed between drops leaves its older version here too: the newest wins, so
    -- that every run picks the same name.
    SELECT patient_id,
           arg_min(given, [CASE name_use WHEN 'official' THEN 0 ELSE 1 END, -epoch(x.valid_from), name_index]) AS given,
           arg_min(family, [CASE name_use WHEN 'official' THEN 0 ELSE 1 END, -epoch(x.valid_from), name_index]) AS family,
           max(CASE WHEN name_use IN ('usual', 'nickname') THEN given END) AS usual_given
    FROM history.health__patient_names x JOIN patients p USING (patient_id)
    WHERE NOT x.is_deleted OR coalesce(x.valid_to, 'infinity'::DATE) = p.held_until
    GROUP BY patient_id
),
patient_nhs AS (
    SELECT patient_id, max(nhs_number) AS nhs_number
    FROM history.health__patient_identifiers x JOIN patients p USING (patient_id)
    WHERE coalesce(x.valid_to, 'infinity'::DATE) = p.held_until
    GROUP BY patient_id
),
patient_address AS (
    -- the address still open, newest first
    SELECT patient_id, x.line1, x.postcode
    FROM history.health__patient_addresses x JOIN patients p USING (patient_id)
    WHERE coalesce(x.valid_to, 'infinity'::DATE) = p.held_until
    QUALIFY row_number() OVER (
        PARTITION BY patient_id ORDER BY (period_end IS NULL) DESC, period_start DESC NULLS LAST) = 1
),
related AS (
    SELECT *, min(valid_from) OVER (PARTITION BY related_person_id) AS first_delivered
    FROM history.health__related_persons
    QUALIFY row_number() OVER (PARTITION BY related_person_id ORDER BY valid_from DESC) = 1
),
mosaic AS (
    SELECT *, coalesce(valid_to, 'infinity'::DATE) AS held_until,
           min(valid_from) OVER (PARTITION BY pers_person_id) AS first_delivered
    FROM history.social_care__ssd_person
    QUALIFY row_number() OVER (PARTITION BY pers_person_id ORDER BY valid_from DESC) = 1
),
mosaic_address AS (
    SELECT addr_person_id,
           addr_address_postcode AS postcode,
           concat_ws(' ', nullif(json_extract_string(addr_address_json, '$.FLAT'), ''),
                     json_extract_string(addr_address_json, '$.HOUSE'),
                     json_extract_string(addr_address_json, '$.STREET')) AS line1,
           nullif(json_extract_string(addr_address_json, '$.UPRN'), '') AS uprn
    FROM history.social_care__ssd_address x JOIN mosaic m ON m.pers_person_id = x.addr_person_id
    WHERE coalesce(x.valid_to, 'infinity'::DATE) = m.held_until
    QUALIFY row_number() OVER (
        PARTITION BY addr_person_id
        ORDER BY (addr_address_end_date IS NULL) DESC, addr_address_start_date DESC NULLS LAST) = 1
),
members AS (
    SELECT *, min(valid_from) OVER (PARTITION BY PERSON_ID) AS first_delivered
    FROM history.early_help__family_members
    QUALIFY row_number() OVER (PARTITION BY PERSON_ID ORDER BY valid_from DESC, FROM_DATE DESC NULLS LAST) = 1
),
families AS (
    SELECT * FROM history.early_help__families
    QUALIFY row_number() OVER (PARTITION BY FAMILY_ID ORDER BY valid_from DESC) = 1
),
contacts AS (
    -- the MASH re-sends a row as triage progresses: the newest version describes the child
    SELECT *, min(valid_from) OVER (PARTITION BY contact_id, child_seq) AS first_delivered
    FROM history.mash__contacts
    QUALIFY row_number() OVER (PARTITION BY contact_id, child_seq ORDER BY updated_at DESC, valid_from DESC) = 1
)
SELECT 'education' AS system, 'pupils' AS table_name, CAST(ONEPupilID AS VARCHAR) AS record_id,
       Forename AS forename, MiddleNames AS middle_names, Surname AS surname,
       NULL::VARCHAR AS alt_forename, coalesce(PreferredSurname, FormerSurname) AS alt_surname,
       DOB AS dob, false AS dob_estimated, Sex AS sex,
       Postcode AS postcode, AddressLine1 AS address, CAST(UPRN AS VARCHAR) AS uprn,
       NULL::VARCHAR AS nhs_number, UPN AS upn, FormerUPN AS former_upn, NULL::VARCHAR AS csc_id,
       valid_to IS NOT NULL AS is_deleted, 'child' AS role, first_delivered
FROM pupils
UNION ALL
SELECT 'health', 'Patient', p.patient_id,
       split_part(n.given, ' ', 1), nullif(trim(substr(n.given, length(split_part(n.given, ' ', 1)) + 1)), ''),
       n.family, n.usual_given, NULL,
       p.birth_date, false, p.gender,
       a.postcode, a.line1, NULL,
       i.nhs_number, NULL, NULL, NULL,
       p.valid_to IS NOT NULL, 'child', p.first_delivered
FROM patients p
LEFT JOIN patient_names n USING (patient_id)
LEFT JOIN patient_nhs i USING (patient_id)
LEFT JOIN patient_address a USING (patient_id)
UNION ALL
SELECT 'health', 'RelatedPerson', related_person_id,
       split_part(given, ' ', 1), nullif(trim(substr(given, length(split_part(given, ' ', 1)) + 1)), ''),
       family, NULL, NULL,
       birth_date, false, CASE relationship WHEN 'MTH' THEN 'F' WHEN 'FTH' THEN 'M' END,
       postcode, line1, NULL,
       nhs_number, NULL, NULL, NULL,
       valid_to IS NOT NULL, 'adult', first_delivered
FROM related
UNION ALL
SELECT 'social_care', 'ssd_person', CAST(m.pers_person_id AS VARCHAR),
       m.pers_forename, NULL, m.pers_surname, NULL, NULL,
       coalesce(m.pers_dob, m.pers_expected_dob), m.pers_dob IS NULL AND m.pers_expected_dob IS NOT NULL, m.pers_sex,
       a.postcode, a.line1, a.uprn,
       m.pers_common_child_id, m.pers_upn, NULL,
       -- a duplicate carries its master's id: both then share one Mosaic identity
       CAST(coalesce(m.pers_duplicate_of, m.pers_person_id) AS VARCHAR),
       m.valid_to IS NOT NULL, CASE WHEN m.pers_is_mother = 'Y' THEN 'adult' END, m.first_delivered
FROM mosaic m
LEFT JOIN mosaic_address a ON a.addr_person_id = m.pers_person_id
UNION ALL
SELECT 'early_help', 'FAMILY_MEMBERS', CAST(m.PERSON_ID AS VARCHAR),
       m.FORENAME, NULL, m.SURNAME, m.KNOWN_AS, NULL,
       m.DOB, false, m.GENDER,
       f.POSTCODE, f.ADDRESS_1, CAST(f.UPRN AS VARCHAR),
       m.NHS_NO, m.UPN, NULL, CAST(m.CSC_ID AS VARCHAR),
       m.valid_to IS NOT NULL, CASE m.ROLE WHEN 'CHILD' THEN 'child' WHEN 'PARENT' THEN 'adult' WHEN 'CARER' THEN 'adult' END,
       m.first_delivered
FROM members m
LEFT JOIN families f USING (FAMILY_ID)
UNION ALL
SELECT 'mash', 'contacts', concat(contact_id, ':', child_seq),
       child_forename, NULL, child_surname, NULL, NULL,
       child_dob, coalesce(child_dob_estimated, false), child_sex,
       postcode, address_line1, NULL,
       child_nhs_number, child_upn, NULL, CAST(csc_person_id AS VARCHAR),
       false, 'child', first_delivered
FROM contacts;
