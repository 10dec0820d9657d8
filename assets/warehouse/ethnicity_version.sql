-- _ethnicity_version (TEMP view): every delivered version of every ethnicity a system
-- recorded for a person record, with how far it is trusted, so that the current value
-- (model.dim_person) and the value held at a past month-end (features) are read from one
-- definition. Grain: (system, table_name, record_id, valid_from).
--   valid_from .. valid_to   the drop that delivered the version .. the drop that replaced
--                            or removed it (NULL: still held)
--   scheme, value            'cbds' or 'nhs' code, or early help's free 'text'; model.ref_ethnicity maps them
--   trust                    1 education, 2 social care, 3 health, 4 early help
--   claimed_from             the date the record claims to begin, where it claims one (an
--                            early help membership's FROM_DATE), else NULL
-- An early help family member appears once per family: the membership starting last is read.
CREATE OR REPLACE TEMP VIEW _ethnicity_version AS
SELECT 'education' AS system, 'pupils' AS table_name, ONEPupilID AS record_id, valid_from, valid_to,
       'cbds' AS scheme, upper(trim(Ethnicity)) AS value, 1 AS trust, NULL::DATE AS claimed_from
FROM history.education__pupils
UNION ALL
SELECT 'social_care', 'ssd_person', pers_person_id, valid_from, valid_to, 'cbds', upper(trim(pers_ethnicity)), 2, NULL
FROM history.social_care__ssd_person
UNION ALL
SELECT 'health', 'Patient', patient_id, valid_from, valid_to, 'nhs', upper(trim(ethnic_category)), 3, NULL
FROM history.health__patients
UNION ALL
-- early help writes a CBDS code or free text: a value that is a code is read as one
SELECT 'early_help', 'FAMILY_MEMBERS', PERSON_ID, valid_from, valid_to,
       CASE WHEN upper(trim(ETHNICITY)) IN (SELECT value FROM model.ref_ethnicity WHERE scheme = 'cbds')
            THEN 'cbds' ELSE 'text' END,
       CASE WHEN upper(trim(ETHNICITY)) IN (SELECT value FROM model.ref_ethnicity WHERE scheme = 'cbds')
            THEN upper(trim(ETHNICITY)) ELSE lower(regexp_replace(trim(ETHNICITY), '\s+', ' ', 'g')) END, 4, FROM_DATE
FROM history.early_help__family_members
QUALIFY row_number() OVER (PARTITION BY PERSON_ID, valid_from ORDER BY FROM_DATE DESC NULLS LAST) = 1;
