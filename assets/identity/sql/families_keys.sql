-- Families, step 4 of 5: the final families and their stable family_key.
--
-- fam_final (temporary): one row per person_key with the family (comp, a temporary
-- component id) they belong to in this run and a flag reason. Input fam_comp2 is the
-- components of relationships plus co-residence; one above ${family_cap} members falls
-- back to fam_comp1 (relationships only), flagged 'oversized (co-residence dropped)'; a
-- relationship component above the cap is kept and flagged 'oversized'.
--
-- identity.family_registry: one row per family_key ever issued (status active / merged /
-- retired, merged_into, first_seen_run, ended_run: the run in which it stopped being
-- active, NULL while active). identity.family_registry_member: one row per person_key, the
-- family_key the person last had (since first_seen_run; ended_run: the run in which the
-- person was no longer linked, NULL while they are). Both persist across runs and
-- rebuilds, and a row is written only when it changes.
--
-- Key rule: each previous family_key goes to the new family holding most of its former
-- members (ties: the smaller component id); each new family keeps, of the keys it won,
-- the one most of its members held (ties: the older key). A family with no key gets the
-- next 'F' + 8-digit sequence number: keys carry no name, date or identifier.
-- Events in identity.link_event (entity 'family'):
--   new    a family given a new key;
--   merge  an old key not carried forward whose members are now in a family with another
--          key (key = the surviving key, other_key = the absorbed key);
--   split  an old key carried forward by one family while some of its former members are
--          now in another (key = the old key, other_key = the family that took them).
-- Re-running on unchanged data issues no key and records no event.

CREATE OR REPLACE TEMP TABLE fam_final AS
WITH s2 AS (SELECT comp, count(*) AS n FROM fam_comp2 GROUP BY comp),
s1 AS (SELECT comp, count(*) AS n FROM fam_comp1 GROUP BY comp)
SELECT c2.person_key,
       CASE WHEN s2.n > ${family_cap} THEN 'r:' || c1.comp ELSE 'c:' || c2.comp END AS comp,
       CASE WHEN s1.n > ${family_cap} THEN 'oversized'
            WHEN s2.n > ${family_cap} THEN 'oversized (co-residence dropped)' END AS flag_reason
FROM fam_comp2 c2 JOIN s2 USING (comp) JOIN fam_comp1 c1 USING (person_key) JOIN s1 ON s1.comp = c1.comp;

CREATE TABLE IF NOT EXISTS identity.family_registry (
    family_key VARCHAR PRIMARY KEY, status VARCHAR, merged_into VARCHAR,
    first_seen_run VARCHAR, ended_run VARCHAR, updated_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS identity.family_registry_member (
    person_key VARCHAR PRIMARY KEY, family_key VARCHAR, first_seen_run VARCHAR, ended_run VARCHAR);
CREATE TABLE IF NOT EXISTS identity.link_event (
    event_id VARCHAR, run_id VARCHAR, entity VARCHAR, event_type VARCHAR, key VARCHAR,
    other_key VARCHAR, detail VARCHAR, recorded_at TIMESTAMPTZ);

CREATE OR REPLACE TEMP TABLE fam_vote AS
SELECT f.comp, m.family_key AS old_key, count(*) AS votes
FROM fam_final f JOIN identity.family_registry_member m USING (person_key)
GROUP BY f.comp, m.family_key;

CREATE OR REPLACE TEMP TABLE fam_key AS
WITH won AS (SELECT * FROM fam_vote QUALIFY row_number() OVER (PARTITION BY old_key ORDER BY votes DESC, comp) = 1),
kept AS (SELECT * FROM won QUALIFY row_number() OVER (PARTITION BY comp ORDER BY votes DESC, old_key) = 1),
comps AS (SELECT comp, count(*) AS members, any_value(flag_reason) AS flag_reason FROM fam_final GROUP BY comp),
base AS (SELECT coalesce(max(CAST(substr(family_key, 2) AS BIGINT)), 0) AS n FROM identity.family_registry)
SELECT c.comp, c.members, c.flag_reason,
       coalesce(k.old_key, 'F' || lpad(CAST((SELECT n FROM base) + row_number() OVER (
           PARTITION BY k.old_key IS NULL ORDER BY c.comp) AS VARCHAR), 8, '0')) AS family_key,
       k.old_key IS NULL AS is_new
FROM comps c LEFT JOIN kept k USING (comp);

CREATE OR REPLACE TEMP TABLE fam_old_size AS
SELECT family_key AS old_key, count(*) AS n FROM identity.family_registry_member GROUP BY family_key;

INSERT INTO identity.link_event
SELECT CAST(uuid() AS VARCHAR), (SELECT run_id FROM fam_run), 'family', event_type, key, other_key, detail,
       (SELECT recorded_at FROM fam_run)
FROM (
    SELECT 'new' AS event_type, family_key AS key, NULL AS other_key,
           'new family of ' || members || ' member(s)' AS detail, 0 AS ord
    FROM fam_key WHERE is_new
    UNION ALL
    SELECT CASE WHEN carried.comp IS NULL THEN 'merge' ELSE 'split' END,
           CASE WHEN carried.comp IS NULL THEN k.family_key ELSE v.old_key END,
           CASE WHEN carried.comp IS NULL THEN v.old_key ELSE k.family_key END,
           CASE WHEN carried.comp IS NULL
                THEN v.votes || ' of ' || o.n || ' former member(s) of ' || v.old_key || ' now in ' || k.family_key
                ELSE v.votes || ' of ' || o.n || ' former member(s) of ' || v.old_key || ' moved to '
                     || k.family_key || '; ' || v.old_key || ' continues' END,
           1
    FROM fam_vote v JOIN fam_key k USING (comp) JOIN fam_old_size o USING (old_key)
    LEFT JOIN fam_key carried ON carried.family_key = v.old_key
    WHERE k.family_key <> v.old_key
)
ORDER BY ord, key, other_key;

-- Registry: carried and new keys are active; absorbed keys merged; keys with no members retired.
INSERT OR REPLACE INTO identity.family_registry
SELECT k.family_key, 'active', NULL, coalesce(r.first_seen_run, (SELECT run_id FROM fam_run)),
       NULL, (SELECT recorded_at FROM fam_run)
FROM fam_key k LEFT JOIN identity.family_registry r USING (family_key)
WHERE r.status IS DISTINCT FROM 'active';

INSERT OR REPLACE INTO identity.family_registry
SELECT r.family_key,
       CASE WHEN m.into_key IS NULL THEN 'retired' ELSE 'merged' END, m.into_key,
       r.first_seen_run, (SELECT run_id FROM fam_run), (SELECT recorded_at FROM fam_run)
FROM identity.family_registry r
LEFT JOIN (SELECT v.old_key, arg_max(k.family_key, v.votes) AS into_key
           FROM fam_vote v JOIN fam_key k USING (comp) GROUP BY v.old_key) m ON m.old_key = r.family_key
WHERE r.status = 'active' AND r.family_key NOT IN (SELECT family_key FROM fam_key)
  AND r.family_key NOT IN (SELECT family_key FROM fam_key_kept);  -- families an incremental run left alone

INSERT OR REPLACE INTO identity.family_registry_member
SELECT f.person_key, k.family_key,
       CASE WHEN m.family_key = k.family_key THEN m.first_seen_run ELSE (SELECT run_id FROM fam_run) END, NULL
FROM fam_final f JOIN fam_key k USING (comp) LEFT JOIN identity.family_registry_member m USING (person_key)
WHERE m.family_key IS DISTINCT FROM k.family_key OR m.ended_run IS NOT NULL;

-- fam_nodes is every person of this run, each of whom has a family (in fam_final or kept)
UPDATE identity.family_registry_member SET ended_run = (SELECT run_id FROM fam_run)
WHERE ended_run IS NULL AND person_key NOT IN (SELECT person_key FROM fam_nodes);
