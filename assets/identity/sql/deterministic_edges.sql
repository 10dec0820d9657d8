-- identity.deterministic_edge: pairs of records that share a validated strong identifier
-- (NHS number, UPN or former UPN, Mosaic person id), one row per (rule, record pair).
-- A shared identifier is accepted only when birth date and sex do not contradict it,
-- because a referrer can type a sibling's number; a contradicted pair is kept with
-- accepted = false and its reason so that it reaches the review queue, not a person.
-- To keep clustering cheap each record keeps one accepted edge per rule: to the first
-- compatible record (by record_key) that shares the identifier.
-- Those edges of a record depend only on the records sharing its identifiers, so an
-- incremental run rebuilds only the edges of records sharing an identifier with one of
-- ${changed} (the old and new values of changed records; every record in a full run):
-- deterministic_scope (link_rule, record_key) lists them, their edges go to ${target}.
CREATE OR REPLACE TEMP MACRO strong_identifier(t) AS TABLE
    SELECT record_key, 'NHS number agrees' AS link_rule, nhs_number AS key_value
    FROM query_table(t) WHERE nhs_number IS NOT NULL
    UNION ALL
    SELECT record_key, 'UPN agrees', upn FROM query_table(t) WHERE upn IS NOT NULL
    UNION ALL
    SELECT record_key, 'UPN agrees', former_upn FROM query_table(t) WHERE former_upn IS NOT NULL
    UNION ALL
    SELECT record_key, 'Mosaic person id agrees', csc_id FROM query_table(t) WHERE csc_id IS NOT NULL;

CREATE OR REPLACE TEMP TABLE deterministic_key AS
SELECT * FROM strong_identifier('identity.standardised_record');

CREATE OR REPLACE TEMP TABLE deterministic_scope AS
SELECT DISTINCT link_rule, record_key FROM deterministic_key
SEMI JOIN strong_identifier('${changed}') c USING (link_rule, key_value);

CREATE OR REPLACE TABLE ${target} AS
WITH pairs AS (
    SELECT DISTINCT a.link_rule, a.record_key AS record_l, b.record_key AS record_r
    FROM deterministic_key a
    JOIN (SELECT * FROM deterministic_key SEMI JOIN deterministic_scope USING (link_rule, record_key)) b
      ON a.link_rule = b.link_rule AND a.key_value = b.key_value AND a.record_key < b.record_key
),
checked AS MATERIALIZED (
    SELECT p.link_rule, p.record_l, p.record_r,
        CASE
            WHEN l.sex IS NOT NULL AND r.sex IS NOT NULL AND l.sex <> r.sex THEN 'sex contradicts'
            WHEN l.dob IS NOT NULL AND r.dob IS NOT NULL AND l.dob <> r.dob
                 AND l.dob IS DISTINCT FROM r.dob_swapped THEN 'birth date contradicts'
            WHEN coalesce(l.dob, l.dob_approximate) IS NOT NULL AND coalesce(r.dob, r.dob_approximate) IS NOT NULL
                 AND abs(datediff('day', coalesce(l.dob, l.dob_approximate), coalesce(r.dob, r.dob_approximate))) > 366
                 THEN 'birth date contradicts'
        END AS contradiction
    FROM pairs p
    JOIN identity.standardised_record l ON l.record_key = p.record_l
    JOIN identity.standardised_record r ON r.record_key = p.record_r
)
SELECT link_rule, record_l, record_r, false AS accepted, contradiction FROM checked WHERE contradiction IS NOT NULL
UNION ALL  -- the first compatible record: a grouping costs less than a window here
SELECT link_rule, min(record_l), record_r, true, NULL FROM checked WHERE contradiction IS NULL
GROUP BY link_rule, record_r;
