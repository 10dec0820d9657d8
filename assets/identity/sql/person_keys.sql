-- Stable person keys. identity.person_registry (persistent, never dropped) maps every
-- source record ever linked to the person_key it holds now. Each run's clusters
-- (identity.cluster: record_key, cluster_id) inherit keys by vote:
--   an old key goes to the cluster holding most of its records (ties: smallest cluster);
--   a cluster keeps the key most of its records held (ties: the oldest key);
--   a cluster left without a key gets a new one: 'P' and a ten-digit sequence number,
--   never derived from names or identifiers.
-- identity.link_event (entity 'person') records, with the run that made them:
--   new    a key issued;
--   merge  an old key not carried forward because its records joined another person
--          (key = surviving key, other_key = absorbed key);
--   split  an old key carried forward while some of its records now form or joined
--          another person (key = old key, other_key = the person that took them).
-- Re-running on unchanged data issues no key and records no event.
-- ${scope} limits the vote to the records an incremental run clustered again (every
-- other record keeps its key); a whole old cluster is always inside or outside it.
-- Needs the variable run_id.
CREATE TABLE IF NOT EXISTS identity.person_registry (
    record_key VARCHAR PRIMARY KEY, person_key VARCHAR, first_run VARCHAR, last_run VARCHAR);
CREATE TABLE IF NOT EXISTS identity.link_event (
    event_id VARCHAR, run_id VARCHAR, entity VARCHAR, event_type VARCHAR, key VARCHAR,
    other_key VARCHAR, detail VARCHAR, recorded_at TIMESTAMPTZ);

CREATE OR REPLACE TEMP TABLE person_vote AS
SELECT c.cluster_id, g.person_key AS old_key, count(*) AS votes
FROM (SELECT * FROM identity.cluster WHERE ${scope}) c JOIN identity.person_registry g USING (record_key)
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE person_key_of_cluster AS
WITH won AS (
    SELECT * FROM person_vote
    QUALIFY row_number() OVER (PARTITION BY old_key ORDER BY votes DESC, cluster_id) = 1
),
kept AS (
    SELECT * FROM won
    QUALIFY row_number() OVER (PARTITION BY cluster_id ORDER BY votes DESC, old_key) = 1
),
issued AS (SELECT coalesce(max(CAST(substr(person_key, 2) AS BIGINT)), 0) AS last FROM identity.person_registry),
clusters AS (SELECT DISTINCT cluster_id FROM identity.cluster WHERE ${scope})
SELECT c.cluster_id,
       coalesce(k.old_key, 'P' || lpad(CAST((SELECT last FROM issued)
           + row_number() OVER (PARTITION BY k.old_key IS NULL ORDER BY c.cluster_id) AS VARCHAR), 10, '0')) AS person_key,
       k.old_key IS NULL AS is_new
FROM clusters c LEFT JOIN kept k USING (cluster_id);

INSERT INTO identity.link_event
SELECT CAST(uuid() AS VARCHAR), getvariable('run_id'), 'person', event_type, key, other_key, detail, now()
FROM (
    SELECT 'new' AS event_type, person_key AS key, NULL AS other_key,
           'a person first seen in this run' AS detail
    FROM person_key_of_cluster WHERE is_new AND NOT EXISTS (
        SELECT 1 FROM person_vote v WHERE v.cluster_id = person_key_of_cluster.cluster_id)
    UNION ALL
    SELECT 'merge', k.person_key, v.old_key, v.votes || ' record(s) joined this person'
    FROM person_vote v JOIN person_key_of_cluster k USING (cluster_id)
    WHERE v.old_key <> k.person_key
      AND NOT EXISTS (SELECT 1 FROM person_key_of_cluster x WHERE x.person_key = v.old_key)
    UNION ALL
    SELECT 'split', v.old_key, k.person_key, v.votes || ' record(s) left this person'
    FROM person_vote v JOIN person_key_of_cluster k USING (cluster_id)
    WHERE v.old_key <> k.person_key
      AND EXISTS (SELECT 1 FROM person_key_of_cluster x WHERE x.person_key = v.old_key)
);

INSERT INTO identity.person_registry
SELECT c.record_key, k.person_key, getvariable('run_id'), getvariable('run_id')
FROM (SELECT * FROM identity.cluster WHERE ${scope}) c JOIN person_key_of_cluster k USING (cluster_id)
ON CONFLICT (record_key) DO UPDATE SET person_key = excluded.person_key, last_run = excluded.last_run;
