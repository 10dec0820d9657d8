-- identity.twin_birth: (birth date, surname or postcode) where the records show two or
-- more different children born that day: in one system, records with different NHS
-- numbers, or pupils with different UPNs (a pupil's former UPN counts as the same child);
-- or, where no identifier tells, two forenames (not a slip or a nickname of one another)
-- each recorded at least twice, since a mistyped name is seldom typed the same way twice
-- while each twin's own name recurs in every record of them. Twins share a birth
-- date, a surname and an address, and parents give them names a typo could turn into
-- each other (Jayden/Jaden); some share a first name and differ only in the middle one.
-- shared_forenames lists first names two of the children there both carry.
-- Grain: one row per (dob, key_kind, key_value). ${dobs} limits the rebuild to some birth
-- dates (an incremental run's changed records'), written to ${target}.
CREATE OR REPLACE TABLE ${target} AS
WITH children AS (
    -- each system's own records: within one system, two NHS numbers or two pupils are two children
    SELECT table_name, dob, surname, postcode, forename, nhs_number AS child_id
    FROM identity.standardised_record
    -- not the MASH (numbers typed by referrers) nor parents recorded by health visitors
    WHERE table_name NOT IN ('contacts', 'RelatedPerson') AND dob IS NOT NULL AND nhs_number IS NOT NULL AND ${dobs}
    UNION ALL
    SELECT table_name, dob, surname, postcode, forename, coalesce(former_upn, upn)
    FROM identity.standardised_record
    WHERE table_name IN ('pupils', 'records') AND dob IS NOT NULL AND upn IS NOT NULL AND ${dobs}
),
keyed AS (
    SELECT table_name, dob, 'surname' AS key_kind, surname AS key_value, forename, child_id
    FROM children WHERE surname IS NOT NULL
    UNION ALL
    SELECT table_name, dob, 'postcode', postcode, forename, child_id
    FROM children WHERE postcode IS NOT NULL
),
named AS (
    SELECT dob, key_kind, key_value, forename, flatten(list(forename_group)) AS forename_group
    FROM (SELECT dob, 'surname' AS key_kind, surname AS key_value, forename, forename_group
          FROM identity.standardised_record WHERE surname IS NOT NULL
          UNION ALL
          SELECT dob, 'postcode', postcode, forename, forename_group
          FROM identity.standardised_record WHERE postcode IS NOT NULL)
    WHERE dob IS NOT NULL AND forename IS NOT NULL AND ${dobs}
    GROUP BY ALL HAVING count(*) >= 2
),
twins AS (
    SELECT DISTINCT dob, key_kind, key_value FROM keyed
    GROUP BY table_name, dob, key_kind, key_value HAVING count(DISTINCT child_id) > 1
    UNION
    SELECT DISTINCT a.dob, a.key_kind, a.key_value
    FROM named a JOIN named b USING (dob, key_kind, key_value)
    WHERE a.forename < b.forename AND jaro_winkler_similarity(a.forename, b.forename) < 0.92
      AND NOT list_has_any(a.forename_group, b.forename_group)
),
shared AS (
    SELECT DISTINCT dob, key_kind, key_value, forename FROM keyed
    GROUP BY table_name, dob, key_kind, key_value, forename HAVING count(DISTINCT child_id) > 1
)
SELECT t.dob, t.key_kind, t.key_value,
       coalesce(list(s.forename) FILTER (WHERE s.forename IS NOT NULL), []) AS shared_forenames
FROM twins t LEFT JOIN shared s USING (dob, key_kind, key_value)
GROUP BY ALL;
