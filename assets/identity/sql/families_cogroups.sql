-- Families, step 3b of 5: the memberships co-residence adds (rules in families_coresidence.sql).
-- Reads ${cores} (fam_cores, or in an incremental run the persisted pairs of every address)
-- and fam_comp1 (every person's relationship component).

CREATE OR REPLACE TEMP TABLE fam_comp1_size AS SELECT comp, count(*) AS n FROM fam_comp1 GROUP BY comp;

-- the pairs whose first person has no linking relationship, read once for both rules below
CREATE OR REPLACE TEMP TABLE fam_lone_cores AS
SELECT c.p, c.q, c.valid_from, c.valid_to, cq.comp AS q_comp, sq.n > 1 AS q_has_relatives
FROM ${cores} c
JOIN fam_comp1 cp ON cp.person_key = c.p JOIN fam_comp1_size sp ON sp.comp = cp.comp AND sp.n = 1
JOIN fam_comp1 cq ON cq.person_key = c.q JOIN fam_comp1_size sq ON sq.comp = cq.comp;

CREATE OR REPLACE TEMP TABLE fam_attach AS  -- lone person -> the family they lived with longest
SELECT p AS person_key, q_comp AS target, sum(coalesce(valid_to, fam_inf()) - valid_from) AS days
FROM fam_lone_cores WHERE q_has_relatives
GROUP BY p, q_comp
QUALIFY row_number() OVER (PARTITION BY p ORDER BY days DESC, q_comp) = 1;

CREATE OR REPLACE TEMP TABLE fam_co_group AS
SELECT person_key, 'c1:' || target AS group_id FROM fam_attach
UNION ALL
SELECT unnest([p, q]), 'co:' || least(p, q) || '|' || greatest(p, q)  -- lone people living only with each other
FROM fam_lone_cores
WHERE NOT q_has_relatives
  AND p NOT IN (SELECT person_key FROM fam_attach) AND q NOT IN (SELECT person_key FROM fam_attach);
