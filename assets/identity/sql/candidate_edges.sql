-- identity.link: every pair of records with evidence that they are one person, one row
-- per pair (grain: record_l < record_r), with the strongest evidence:
--   priority 0  a reviewer said "match" (review CSV, latest decision per pair wins);
--   priority 1  a shared validated identifier (identity.deterministic_edge);
--   priority 2  a Splink probability at or above the match threshold.
-- status: 'candidate' (clustering decides: accepted / redundant / refused),
--         'refused' before clustering (identifier contradicted by birth date or sex, or
--         held back by the twin guard), or 'grey zone' (below the threshold: review).
-- proposed keeps the status before clustering, so a later run can re-cluster from it.
-- ${target} and ${pairs} (a condition on the pair p) let an incremental run rebuild only
-- pairs touching changed records; ${scored_pairs} is the same for scored pairs (a pair
-- scored since the last run always touches a changed record), and ${identifier_edges}
-- for shared identifiers (in an incremental run, the edges touching a changed record and
-- those just rebuilt: any other edge and its link are as the last run left them).
-- Needs the variable match_threshold.
CREATE OR REPLACE VIEW identity.current_review_decision AS
SELECT least(record_l, record_r) AS record_l, greatest(record_l, record_r) AS record_r,
       decision, reviewer, decided_at
FROM identity.review_decision
QUALIFY row_number() OVER (PARTITION BY least(record_l, record_r), greatest(record_l, record_r)
                           ORDER BY decided_at DESC) = 1;

CREATE OR REPLACE TABLE ${target} AS
WITH
reviewed AS (
    SELECT record_l, record_r, 0 AS priority, 'reviewer: match' AS link_rule, 1.0 AS match_probability,
           'a reviewer (' || coalesce(reviewer, 'unnamed') || ') decided these records are one person' AS explanation,
           'candidate' AS status, NULL AS reason
    FROM identity.current_review_decision AS p WHERE decision = 'match' AND ${pairs}
),
shared_identifier AS (
    SELECT d.record_l, d.record_r, 1, d.link_rule, coalesce(s.match_probability, 1.0),
           d.link_rule || CASE WHEN d.accepted THEN '; birth date and sex do not contradict'
                               ELSE '; but ' || d.contradiction END,
           CASE WHEN d.accepted THEN 'candidate' ELSE 'refused' END,
           CASE WHEN NOT d.accepted THEN d.link_rule || ' but ' || d.contradiction END
    FROM (SELECT * FROM ${identifier_edges} AS p WHERE ${pairs}) d
    LEFT JOIN identity.scored_pair s USING (record_l, record_r)
),
guarded AS (
    -- Most false matches are parents and siblings, above all twins. Where birth dates
    -- agree and no identifier does, hold the pair back when
    --   the forenames are more than a slip apart (another child born that day), or
    --   neither forename nor surname agrees outright,
    -- if the birth date belongs to children the records show to be twins
    -- (identity.twin_birth), or if this data's shown twins make unshown ones likely
    -- (identity.twin_share; then a name one keystroke off, a letter wrong, missing,
    -- extra or two swapped, still counts as a typing slip); and, at a shown twin's birth
    -- date, when the names do not tell the twins apart: first names must agree, middle
    -- names must not differ, and where the twins share a first name both middle names
    -- are needed. A pair whose forename and surname are each other's swapped (give or
    -- take a keystroke) is not held back: twins share a surname. Needs the variable unshown_twins_likely.
    -- And never let a record the source calls a child's join one it calls an adult's, nor
    -- two children one MASH contact names (record_id contact_id:child_seq): a contact
    -- lists each child once, and the children it lists are siblings, often twins.
    SELECT s.*,
        CASE
        WHEN l.role <> r.role THEN 'a child''s record and an adult''s record'
        WHEN l.system = 'mash' AND r.system = 'mash' AND l.table_name = 'contacts' AND r.table_name = 'contacts'
             AND regexp_replace(l.record_id, ':[^:]*$', '') = regexp_replace(r.record_id, ':[^:]*$', '')
        THEN 'two children named on one MASH contact'
        WHEN (l.dob = r.dob OR l.dob = r.dob_swapped OR l.dob_swapped = r.dob)
             AND NOT coalesce(l.nhs_number = r.nhs_number, false)
             AND NOT coalesce(l.upn = r.upn, false)
             -- names swapped (each at most a keystroke off the other's)
             AND NOT coalesce(damerau_levenshtein(l.forename, r.surname) <= 1
                              AND damerau_levenshtein(l.surname, r.forename) <= 1, false)
             AND (t.dob IS NOT NULL OR getvariable('unshown_twins_likely'))
        THEN CASE
            WHEN coalesce(jaro_winkler_similarity(l.forename, r.forename) < 0.92
                          AND len(list_intersect(l.forename_group, r.forename_group)) = 0
                          AND NOT (t.dob IS NULL AND damerau_levenshtein(l.forename, r.forename) <= 1), true)
            THEN 'same birth date but different forenames'
            WHEN NOT coalesce(l.forename = r.forename OR len(list_intersect(l.forename_group, r.forename_group)) > 0
                              OR (t.dob IS NULL AND damerau_levenshtein(l.forename, r.forename) <= 1), false)
                 AND NOT coalesce(l.surname = r.surname OR l.surname = r.alt_surname OR l.alt_surname = r.surname
                                  OR (t.dob IS NULL AND damerau_levenshtein(l.surname, r.surname) <= 1), false)
            THEN 'same birth date but neither forename nor surname agrees'
            WHEN t.dob IS NOT NULL AND (
                 NOT coalesce(l.forename = r.forename OR len(list_intersect(l.forename_group, r.forename_group)) > 0, false)
                 OR l.middle_names <> r.middle_names
                 OR ((l.middle_names IS NULL OR r.middle_names IS NULL)
                     AND list_has_any(t.shared_forenames, [l.forename, r.forename])))
            THEN 'twin guard: a known twin''s birth date and the names do not tell the twins apart'
        END END AS guard_reason
    FROM (SELECT * FROM identity.scored_pair AS p WHERE ${scored_pairs}) s
    JOIN identity.standardised_record l ON l.record_key = s.record_l
    JOIN identity.standardised_record r ON r.record_key = s.record_r
    LEFT JOIN (
        SELECT dob, key_kind, key_value, flatten(list(shared_forenames)) AS shared_forenames
        FROM identity.twin_birth GROUP BY ALL
    ) t ON t.dob = l.dob AND ((t.key_kind = 'surname' AND t.key_value IN (l.surname, r.surname))
                           OR (t.key_kind = 'postcode' AND t.key_value IN (l.postcode, r.postcode)))
    QUALIFY row_number() OVER (PARTITION BY s.record_l, s.record_r ORDER BY guard_reason NULLS LAST) = 1
),
probabilistic AS (
    SELECT record_l, record_r, 2, 'probabilistic', match_probability,
           printf('match probability %.4f: ', match_probability) || explanation,
           CASE WHEN match_probability < getvariable('match_threshold') THEN 'grey zone'
                WHEN guard_reason IS NOT NULL THEN 'refused' ELSE 'candidate' END,
           CASE WHEN match_probability >= getvariable('match_threshold') THEN guard_reason END
    FROM guarded
)
SELECT *, status AS proposed FROM (
    SELECT * FROM reviewed UNION ALL SELECT * FROM shared_identifier UNION ALL SELECT * FROM probabilistic
)
QUALIFY row_number() OVER (  -- link_rule: two shared identifiers tie, and every run picks the same
    PARTITION BY record_l, record_r
    ORDER BY status = 'candidate' DESC, priority, match_probability DESC, link_rule) = 1;
