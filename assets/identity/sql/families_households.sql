-- Families, step 1b of 5: occupancy spells and households (see families_residence.sql for
-- what a household is). Reads ${residence} (fam_residence, or in an incremental run the
-- residences at the addresses whose residences or people changed) and writes
-- ${household_out} (identity.household, or a temporary table the rows are swapped into).
-- identity.household_registry (persistent): one row per household_key ever issued, with
-- its address and spell, first_seen_run, and ended_run (the run in which no spell kept the
-- key; NULL while it is current). ${address_scope} is the addresses rebuilt (every one in
-- a full run).

-- Occupancy spells: islands of strictly overlapping residences at one address.
CREATE OR REPLACE TEMP TABLE fam_res_spell AS
WITH numbered AS (  -- one total order, materialised once, for both windows below
    SELECT *, row_number() OVER (PARTITION BY address_key
                                 ORDER BY valid_from, coalesce(valid_to, fam_inf()), person_key, source) AS rn
    FROM ${residence}
),
ordered AS (
    SELECT *, max(coalesce(valid_to, fam_inf())) OVER (
                  PARTITION BY address_key ORDER BY rn ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
    FROM numbered
)
SELECT * EXCLUDE (rn, prev_end),
       sum(CASE WHEN prev_end IS NULL OR valid_from >= prev_end THEN 1 ELSE 0 END) OVER (
           PARTITION BY address_key ORDER BY rn ROWS UNBOUNDED PRECEDING) AS spell_no
FROM ordered;

CREATE OR REPLACE TEMP TABLE fam_spell AS
SELECT address_key, spell_no, min(valid_from) AS valid_from,
       CASE WHEN bool_or(valid_to IS NULL) THEN NULL ELSE max(valid_to) END AS valid_to,
       count(DISTINCT person_key) AS people,
       count(DISTINCT person_key) > ${household_cap} AS is_crowded
FROM fam_res_spell GROUP BY address_key, spell_no;

CREATE TABLE IF NOT EXISTS identity.household_registry (
    household_key VARCHAR PRIMARY KEY, address_key VARCHAR, valid_from DATE, valid_to DATE,
    first_seen_run VARCHAR, ended_run VARCHAR);

-- Each registered household goes to the spell at its address that overlaps it most; each
-- spell takes the oldest registered household it won; the rest get new keys.
CREATE OR REPLACE TEMP TABLE fam_spell_key AS
WITH cand AS (
    SELECT s.address_key, s.spell_no, r.household_key,
           least(coalesce(s.valid_to, fam_inf()), coalesce(r.valid_to, fam_inf()))
             - greatest(s.valid_from, r.valid_from) AS overlap
    FROM fam_spell s JOIN identity.household_registry r
      ON r.address_key = s.address_key AND s.valid_from < coalesce(r.valid_to, fam_inf())
     AND r.valid_from < coalesce(s.valid_to, fam_inf())
),
won AS (SELECT * FROM cand QUALIFY row_number() OVER (PARTITION BY household_key ORDER BY overlap DESC, spell_no) = 1),
kept AS (SELECT * FROM won QUALIFY row_number() OVER (PARTITION BY address_key, spell_no ORDER BY household_key) = 1),
base AS (SELECT coalesce(max(CAST(substr(household_key, 2) AS BIGINT)), 0) AS n FROM identity.household_registry)
SELECT s.*, coalesce(k.household_key,
         'H' || lpad(CAST((SELECT n FROM base) + row_number() OVER (
                 PARTITION BY k.household_key IS NULL ORDER BY s.valid_from, s.address_key, s.spell_no) AS VARCHAR), 8, '0'))
         AS household_key,
       k.household_key IS NULL AS is_new
FROM fam_spell s LEFT JOIN kept k USING (address_key, spell_no);

-- Registry rows are written only when new or changed: an unchanged household costs no write.
INSERT OR REPLACE INTO identity.household_registry
SELECT s.household_key, s.address_key, s.valid_from, s.valid_to,
       coalesce(r.first_seen_run, (SELECT run_id FROM fam_run)), NULL
FROM fam_spell_key s LEFT JOIN identity.household_registry r USING (household_key)
WHERE r.household_key IS NULL OR r.ended_run IS NOT NULL OR r.address_key IS DISTINCT FROM s.address_key
   OR r.valid_from IS DISTINCT FROM s.valid_from OR r.valid_to IS DISTINCT FROM s.valid_to;

-- A key no spell kept, at an address rebuilt here (${address_scope}), has ended in this run.
UPDATE identity.household_registry SET ended_run = (SELECT run_id FROM fam_run)
WHERE ended_run IS NULL AND ${address_scope}
  AND household_key NOT IN (SELECT household_key FROM fam_spell_key);

CREATE OR REPLACE TABLE ${household_out} AS
SELECT k.household_key, r.person_key,
       arg_min(r.address_basis, list_position(['uprn', 'uprn (looked up)', 'flat matched at postcode',
                                               'postcode + line'], r.address_basis)) AS address_basis,
       min(r.uprn) AS uprn, mode(r.postcode ORDER BY r.postcode) AS postcode,
       min(r.valid_from) AS valid_from,
       CASE WHEN bool_or(r.valid_to IS NULL) THEN NULL ELSE max(r.valid_to) END AS valid_to,
       -- the residences it was made of, each with the drops that made it and its end known,
       -- so that the features can ask what was known of it at a past date
       list({'valid_from': r.valid_from, 'valid_to': r.valid_to, 'known_from': r.known_from,
             'end_known_from': r.end_known_from}
            ORDER BY r.valid_from, r.valid_to NULLS LAST, r.known_from, r.end_known_from) AS residences,
       array_to_string(list_sort(list_distinct(list(r.source))), '; ') AS evidence,  -- source is never NULL
       any_value(k.people) AS household_people, any_value(k.is_crowded) AS is_crowded
FROM fam_res_spell r JOIN fam_spell_key k USING (address_key, spell_no)
GROUP BY k.household_key, r.person_key;
