-- model.dim_person: one row per person_key (every person identity found, children and the
-- adults around them), with no name, identifier or exact birth date.
-- Grain: person_key.
--   family_key       the person's current family (identity.family_member), else the last one
--   birth_month      first day of the month of birth; birth_year its year
--   sex              M / F / U (unknown or other)
--   ethnicity_code   one CBDS code per person: the most trusted known value (education, then
--                    social care, then health, then early help; a record still delivered
--                    before one the source dropped, then the newest). When no system knows it,
--                    the not-known code recorded (REFU refused, NOBT not obtained/not stated),
--                    or NULL when no system recorded anything. Mapping: model.ref_ethnicity.
--   ethnicity_group  White / Mixed / Asian / Black / Chinese / Other / Not known
--   district, lsoa, imd_decile   from the person's postcode (identity.person) in the
--                    reference postcodes; NULL when the postcode is unknown or outside them
--   is_child         under 18 on the build's as-of date (the newest extract date); when the
--                    birth date is unknown, whether any system records them as a child
CREATE OR REPLACE TABLE model.dim_person AS
WITH ethnicity_record AS (
    -- each record's ethnicity as its system last delivered it (ethnicity_version.sql)
    SELECT * FROM _ethnicity_version
    QUALIFY row_number() OVER (PARTITION BY system, table_name, record_id ORDER BY valid_from DESC) = 1
),
ethnicity AS (
    SELECT rp.person_key,
           arg_min(m.ethnicity_code, (NOT m.is_known, e.trust, rp.record_deleted, -epoch(e.valid_from), e.record_id)) AS ethnicity_code,
           arg_min(m.ethnicity_group, (NOT m.is_known, e.trust, rp.record_deleted, -epoch(e.valid_from), e.record_id)) AS ethnicity_group,
           arg_min(e.system, (NOT m.is_known, e.trust, rp.record_deleted, -epoch(e.valid_from), e.record_id)) AS ethnicity_source
    FROM ethnicity_record e
    JOIN model.ref_ethnicity m ON m.scheme = e.scheme AND m.value = e.value
    JOIN _record_person rp USING (system, table_name, record_id)
    GROUP BY rp.person_key
)
SELECT p.person_key,
       cf.family_key,
       date_trunc('month', p.dob)::DATE AS birth_month,
       year(p.dob)::INTEGER AS birth_year,
       CASE WHEN upper(p.sex) IN ('M', 'F') THEN upper(p.sex) ELSE 'U' END AS sex,
       coalesce(e.ethnicity_group, 'Not known') AS ethnicity_group,
       e.ethnicity_code,
       e.ethnicity_source,
       pc.district,
       pc.lsoa,
       pc.imd_decile::INTEGER AS imd_decile,
       CASE WHEN p.dob IS NOT NULL THEN p.dob > (SELECT as_of FROM _as_of) - INTERVAL 18 YEAR
            ELSE coalesce(p.known_as_child, false) END AS is_child,
       coalesce(p.known_as_child, false) AS known_as_child,
       p.systems,
       p.system_count,
       p.records
FROM identity.person p
LEFT JOIN _current_family cf USING (person_key)
LEFT JOIN ethnicity e USING (person_key)
LEFT JOIN _postcode pc ON pc.postcode = p.postcode
ORDER BY p.person_key;
