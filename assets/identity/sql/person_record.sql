-- identity.person_record: one row per source record (grain: system, table_name,
-- record_id) with its person_key and why it belongs there: the strongest accepted link
-- that touches it (reviewer decision, shared identifier, then match probability), or
-- 'only record' for a person known from one record.
-- identity.person: one row per person_key, with the values the most trusted system holds
-- (health, then education, social care, early help, the MASH) and where it is known; a
-- tie between two records of one system goes to the first record_key, so that a rerun
-- or an incremental run picks the same value.
-- ${scope} limits the rebuild to the records an incremental run clustered again (those
-- no longer delivered among them), and to the persons they belonged to before or belong to now.
CREATE TABLE IF NOT EXISTS identity.person_record (
    person_key VARCHAR, system VARCHAR, table_name VARCHAR, record_id VARCHAR,
    match_probability DOUBLE, link_rule VARCHAR, explanation VARCHAR, record_key VARCHAR);
CREATE TABLE IF NOT EXISTS identity.person (
    person_key VARCHAR, forename VARCHAR, surname VARCHAR, dob DATE, sex VARCHAR, postcode VARCHAR,
    nhs_number VARCHAR, upn VARCHAR, records BIGINT, systems VARCHAR[], system_count BIGINT,
    known_as_child BOOLEAN);
CREATE TEMP TABLE IF NOT EXISTS person_in_scope (person_key VARCHAR);
DELETE FROM person_in_scope;
INSERT INTO person_in_scope
SELECT person_key FROM identity.person_registry WHERE ${scope}
UNION SELECT person_key FROM identity.person_record WHERE ${scope};

DELETE FROM identity.person_record WHERE ${scope};

INSERT INTO identity.person_record
WITH touching AS (  -- of the records in scope only: the link table is wide
    SELECT * FROM (
        SELECT record_l AS record_key, priority, link_rule, match_probability, explanation
        FROM identity.link WHERE status = 'accepted'
        UNION ALL
        SELECT record_r, priority, link_rule, match_probability, explanation
        FROM identity.link WHERE status = 'accepted')
    WHERE ${scope}
),
strongest AS (
    SELECT * FROM touching
    QUALIFY row_number() OVER (PARTITION BY record_key ORDER BY priority, match_probability DESC, link_rule) = 1
)
SELECT g.person_key, s.system, s.table_name, s.record_id,
       t.match_probability,
       coalesce(t.link_rule, 'only record') AS link_rule,
       coalesce(t.explanation, 'no other record of this person was found') AS explanation,
       s.record_key
FROM identity.standardised_record s
JOIN identity.person_registry g USING (record_key)
LEFT JOIN strongest t USING (record_key)
WHERE ${scope};

DELETE FROM identity.person WHERE person_key IN (SELECT person_key FROM person_in_scope);

INSERT INTO identity.person
WITH ranked AS (
    SELECT p.person_key, s.*,
           CASE s.system WHEN 'health' THEN 1 WHEN 'education' THEN 2 WHEN 'social_care' THEN 3
                         WHEN 'early_help' THEN 4 ELSE 5 END || '|' || s.record_key AS trust
    FROM identity.person_record p JOIN identity.standardised_record s USING (record_key)
    WHERE p.person_key IN (SELECT person_key FROM person_in_scope)
)
SELECT person_key,
       arg_min(forename, trust) FILTER (WHERE forename IS NOT NULL) AS forename,
       arg_min(surname, trust) FILTER (WHERE surname IS NOT NULL) AS surname,
       arg_min(dob, trust) FILTER (WHERE dob IS NOT NULL) AS dob,
       arg_min(sex, trust) FILTER (WHERE sex IS NOT NULL) AS sex,
       arg_min(postcode, trust) FILTER (WHERE postcode IS NOT NULL) AS postcode,
       min(nhs_number) AS nhs_number,
       min(upn) AS upn,
       count(*) AS records,
       list(DISTINCT system ORDER BY system) AS systems,
       count(DISTINCT system) AS system_count,
       bool_or(role = 'child') AS known_as_child
FROM ranked
GROUP BY person_key;
