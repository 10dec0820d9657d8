-- Families, step 5 of 5: time-bounded membership and one row per family.
--
-- identity.family_member: who belonged to which family when, and why. Grain: one row per
-- family_key, person_key and continuous spell of membership. A spell is the union of the
-- periods of the person's evidence within the family: the relationships and memberships
-- of fam_evidence whose people are all in this family (including the non-linking FATHER,
-- STEP_PARENT and FTH links), and the periods they lived at one address with another
-- member (co-residence). Periods that overlap or touch make one spell; valid_to is NULL
-- while open. evidence lists the sources behind the spell. role is the person's role
-- (fam_role). periods lists the evidence periods the spell was made of, each with the drop
-- that first delivered its evidence (known_from: for co-residence, the later of the two
-- residences), so that the features can ask what was known of a membership at a past
-- date. A person with no evidence at all is a family of one with NULL dates and
-- evidence 'no relationship or co-residence found'. (fam_interval keeps each distinct
-- period once: repeating a period changes no spell, date or evidence list.)
--
-- identity.family: one row per family_key in this run: first_seen_run from
-- identity.family_registry, members, children, adults and current members (an open
-- spell), the family's first and last dates, the kinds of evidence behind it, and a flag
-- when it is implausibly large (see families_keys.sql).

CREATE OR REPLACE TEMP TABLE fam_interval AS
WITH fk AS (SELECT f.person_key, k.family_key FROM fam_final f JOIN fam_key k USING (comp)),
whole AS (  -- evidence groups all of whose people are in one family (fam_fk_all: every person's family)
    SELECT e.group_id, any_value(fk.family_key) AS family_key
    FROM fam_evidence e JOIN fam_fk_all fk USING (person_key)
    WHERE e.group_id IN (SELECT group_id FROM fam_evidence JOIN fk USING (person_key))
    GROUP BY e.group_id HAVING count(DISTINCT fk.family_key) = 1
)
SELECT DISTINCT w.family_key, e.person_key, e.evidence, e.valid_from, e.valid_to, e.known_from
FROM fam_evidence e JOIN whole w USING (group_id)
UNION ALL
SELECT DISTINCT fp.family_key, c.p, 'co-residence', c.valid_from, c.valid_to, c.known_from
FROM ${cores} c JOIN fk fp ON fp.person_key = c.p JOIN fk fq ON fq.person_key = c.q
WHERE fp.family_key = fq.family_key;

CREATE OR REPLACE TABLE ${family_member_out} AS
WITH fk AS (SELECT f.person_key, k.family_key FROM fam_final f JOIN fam_key k USING (comp)),
numbered AS (  -- one total order, materialised once, for both windows below
    SELECT *, row_number() OVER (PARTITION BY family_key, person_key
                                 ORDER BY valid_from, coalesce(valid_to, fam_inf()), evidence) AS rn
    FROM fam_interval
),
ordered AS (
    SELECT *, max(coalesce(valid_to, fam_inf())) OVER (
                  PARTITION BY family_key, person_key ORDER BY rn
                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
    FROM numbered
),
spells AS (
    SELECT *, sum(CASE WHEN prev_end IS NULL OR valid_from > prev_end THEN 1 ELSE 0 END) OVER (
                  PARTITION BY family_key, person_key ORDER BY rn ROWS UNBOUNDED PRECEDING) AS spell_no
    FROM ordered
),
rows AS (
    SELECT family_key, person_key, min(valid_from) AS valid_from,
           CASE WHEN bool_or(valid_to IS NULL) THEN NULL ELSE max(valid_to) END AS valid_to,
           CASE WHEN count(evidence) > 0  -- string_agg(DISTINCT evidence, '; ' ORDER BY evidence), faster
                THEN array_to_string(list_sort(list_distinct(list(evidence))), '; ') END AS evidence,
           list(DISTINCT {'valid_from': valid_from, 'valid_to': valid_to, 'known_from': known_from}) AS periods
    FROM spells GROUP BY family_key, person_key, spell_no
    UNION ALL
    SELECT fk.family_key, fk.person_key, NULL, NULL, 'no relationship or co-residence found', NULL
    FROM fk WHERE NOT EXISTS (SELECT 1 FROM fam_interval i WHERE i.person_key = fk.person_key AND i.family_key = fk.family_key)
)
SELECT r.family_key, r.person_key, coalesce(fr.role, 'adult') AS role, r.valid_from, r.valid_to, r.evidence,
       list_sort(r.periods) AS periods
FROM rows r LEFT JOIN fam_role fr USING (person_key)
ORDER BY r.family_key, r.person_key, r.valid_from;

CREATE OR REPLACE TABLE ${family_out} AS
WITH m AS (
    SELECT family_key, count(DISTINCT person_key) AS members,
           count(DISTINCT person_key) FILTER (WHERE role = 'child') AS children,
           count(DISTINCT person_key) FILTER (WHERE role = 'adult') AS adults,
           count(DISTINCT person_key) FILTER (WHERE valid_to IS NULL) AS current_members,
           min(valid_from) AS valid_from,
           CASE WHEN bool_or(valid_to IS NULL) THEN NULL ELSE max(valid_to) END AS valid_to
    FROM ${family_member_out} GROUP BY family_key
),
ev AS (
    SELECT family_key, string_agg(DISTINCT regexp_replace(evidence, ' \(.*\)$', ''), '; ' ORDER BY regexp_replace(evidence, ' \(.*\)$', '')) AS evidence
    FROM (SELECT family_key, unnest(string_split(evidence, '; ')) AS evidence FROM ${family_member_out})
    GROUP BY family_key
)
SELECT m.family_key, r.first_seen_run, m.members, m.children, m.adults, m.current_members,
       m.valid_from, m.valid_to, ev.evidence, k.flag_reason IS NOT NULL AS is_flagged, k.flag_reason
FROM m JOIN ev USING (family_key) JOIN fam_key k USING (family_key)
JOIN identity.family_registry r USING (family_key)
ORDER BY m.family_key;
