-- Each child's values at each month-end, before the family is added (TEMP tables; see
-- child_month.sql for what they mean and known.sql for what "known" means).
-- _feat_known: events known at each as_of. Grain: (as_of, person_key, kind, record_id).
-- _feat_cohort: children known to any system by as_of, with their age. Grain: (person_key, as_of).
-- _feat_child_month: every child_month value but the family's. Grain: (person_key, as_of).

-- Only as far back as a value looks: two years for counts and factors (a re-referral looks
-- a year behind a referral in the 12m), all time for episodes, plans and open states.
CREATE OR REPLACE TEMP TABLE _feat_known AS
SELECT d.as_of, e.person_key, e.kind, e.record_id, e.claimed,
       CASE WHEN e.ends <= d.as_of THEN e.ends END AS ended, e.codes
FROM _feat_event e
JOIN _feat_as_of d ON e.seen_from <= d.as_of AND d.as_of < e.seen_to AND e.claimed <= d.as_of
WHERE e.claimed > d.as_of - INTERVAL 24 MONTH
   OR e.kind IN ('eh_episode', 'cin_plan', 'cp_plan', 'cla', 'permanent_exclusion', 'home_education',
                 'missing_education', 'free_school_meals', 'csc_referral');

-- _feat_residence: the residences each household row of identity.household was made of.
-- A residence counts from the drop that first delivered it (known_from, under the
-- knowledge rule) and from the date it claims; its end only from the drop that made the
-- end known (end_known_from): until then, as far as the warehouse knew, the person still
-- lived there. Grain: (person_key, household_key, one residence).
CREATE OR REPLACE TEMP TABLE _feat_residence AS
SELECT h.person_key, h.household_key, h.postcode, h.r.valid_from,
       coalesce(h.r.valid_to, 'infinity'::DATE) AS valid_to,
       coalesce(feat_seen_from(h.r.end_known_from, g.go_live), 'infinity'::DATE) AS end_seen_from,
       feat_seen_from(h.r.known_from, g.go_live) AS seen_from
FROM (SELECT person_key, household_key, postcode, unnest(residences) AS r FROM identity.household) h,
     (SELECT min(go_live) AS go_live FROM _feat_go_live) g
WHERE h.r.valid_from IS NOT NULL;

-- features.child_population: the children features.child_month covers, defined here once
-- (the features integrity check reads it). Grain: person_key. Every person identity knows
-- with a birth date, and known_since: the first day the warehouse knew of them, the
-- earliest of the delivery of any of their records (a child with no address, event or
-- school record is still a child) and the known dates of their events, residences and
-- attendance (under backload_as_claimed, the dates a go-live record claims). child_month
-- has a row for each month-end D with known_since <= D on which the child is aged 0-17.
CREATE OR REPLACE TABLE features.child_population AS
WITH known_by AS (
    SELECT person_key, min(greatest(claimed, seen_from)) AS since FROM _feat_event GROUP BY ALL
    UNION ALL
    SELECT person_key, min(greatest(valid_from, seen_from)) FROM _feat_residence GROUP BY ALL
    UNION ALL
    SELECT person_key, min(greatest(claimed, seen_from)) FROM _feat_attendance GROUP BY ALL
    UNION ALL
    SELECT p.person_key, min(s.first_delivered) FROM identity.source_person s
    JOIN _feat_person_of p USING (system, table_name, record_id) GROUP BY ALL
)
SELECT c.person_key, c.dob, min(k.since) AS known_since
FROM _feat_child c JOIN known_by k USING (person_key)
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE _feat_cohort AS
SELECT c.person_key, d.as_of, c.dob, c.sex,
       CAST(date_diff('year', c.dob, d.as_of)
            - CASE WHEN strftime(d.as_of, '%m%d') < strftime(c.dob, '%m%d') THEN 1 ELSE 0 END AS INTEGER) AS age_years
FROM _feat_child c
JOIN features.child_population k USING (person_key)
JOIN _feat_as_of d ON k.known_since <= d.as_of AND c.dob <= d.as_of AND d.as_of < c.dob + INTERVAL 18 YEAR;

-- Each child's ethnicity at each month-end, ranked as model.dim_person ranks a record's
-- values (ethnicity_version.sql) but over each record's newest version delivered by then:
-- a later correction or a later record does not rewrite the past.
CREATE OR REPLACE TEMP TABLE _feat_ethnicity AS
WITH version AS (
    SELECT p.person_key, e.system, e.record_id, e.valid_from, e.valid_to, e.trust, m.ethnicity_group, m.is_known,
           -- known from its delivery, and not before the date it claims to begin
           greatest(feat_seen_from(e.valid_from, g.go_live), coalesce(e.claimed_from, '-infinity'::DATE)) AS seen_from
    FROM _ethnicity_version e
    JOIN _feat_person_of p USING (system, table_name, record_id)
    JOIN _feat_go_live g USING (system)
    JOIN model.ref_ethnicity m ON m.scheme = e.scheme AND m.value = e.value
    SEMI JOIN features.child_population c ON c.person_key = p.person_key
),
newest AS (
    SELECT d.as_of, v.*
    FROM version v JOIN _feat_as_of d ON v.seen_from <= d.as_of
    QUALIFY row_number() OVER (PARTITION BY d.as_of, v.system, v.record_id ORDER BY v.valid_from DESC) = 1
)
SELECT as_of, person_key,
       arg_min(ethnicity_group, (NOT is_known, trust, coalesce(valid_to <= as_of, false), -epoch(valid_from), record_id))
           AS ethnicity_group
FROM newest GROUP BY ALL;

-- Counted per kind first, then turned into columns: one pass over the known events.
CREATE OR REPLACE TEMP TABLE _feat_activity AS
WITH per_kind AS (
    SELECT as_of, person_key, kind, count(*) AS ever,
           count(*) FILTER (WHERE claimed > as_of - INTERVAL 12 MONTH) AS in_12m,
           bool_or(ended IS NULL) AS any_open
    FROM _feat_known
    WHERE kind NOT IN ('factors', 'sf_needs')
    GROUP BY ALL
)
SELECT as_of, person_key,
    CAST(sum(in_12m) FILTER (WHERE kind = 'mash_contact') AS INTEGER) AS mash_contacts_12m,
    CAST(sum(in_12m) FILTER (WHERE kind = 'mash_red') AS INTEGER) AS mash_red_12m,
    CAST(sum(ever) FILTER (WHERE kind = 'eh_episode') AS INTEGER) AS prior_eh_episodes,
    bool_or(any_open) FILTER (WHERE kind = 'eh_episode') AS open_to_early_help,
    CAST(sum(ever) FILTER (WHERE kind = 'cin_plan') AS INTEGER) AS prior_cin_plans,
    CAST(sum(ever) FILTER (WHERE kind = 'cp_plan') AS INTEGER) AS prior_cp_plans,
    CAST(sum(ever) FILTER (WHERE kind = 'cla') AS INTEGER) AS prior_cla_episodes,
    bool_or(any_open) FILTER (WHERE kind IN ('csc_referral', 'cin_plan', 'cp_plan', 'cla')) AS open_to_social_care,
    bool_or(any_open) FILTER (WHERE kind IN ('cp_plan', 'cla')) AS open_cp_or_cla,
    CAST(sum(in_12m) FILTER (WHERE kind = 'csc_referral') AS INTEGER) AS csc_referrals_12m,
    CAST(sum(in_12m) FILTER (WHERE kind = 'suspension') AS INTEGER) AS suspensions_12m,
    bool_or(true) FILTER (WHERE kind = 'permanent_exclusion') AS permanently_excluded,
    bool_or(any_open) FILTER (WHERE kind = 'home_education') AS home_educated,
    bool_or(any_open) FILTER (WHERE kind = 'missing_education') AS missing_education,
    bool_or(any_open) FILTER (WHERE kind = 'free_school_meals') AS free_school_meals,
    CAST(sum(in_12m) FILTER (WHERE kind = 'missed_health_review') AS INTEGER) AS missed_health_reviews_12m,
    CAST(sum(in_12m) FILTER (WHERE kind = 'camhs_referral') AS INTEGER) AS camhs_referrals_12m
FROM per_kind
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE _feat_codes AS
WITH codes AS (
    SELECT as_of, person_key, kind, list_distinct(flatten(list(codes))) AS codes
    FROM _feat_known
    WHERE kind = 'factors' OR (kind = 'sf_needs' AND claimed > as_of - INTERVAL 12 MONTH)
    GROUP BY ALL
)
SELECT as_of, person_key,
    bool_or(kind = 'factors' AND list_has_any(codes, ['3A', '3B', '3C'])) AS factor_domestic_abuse,
    bool_or(kind = 'factors' AND list_has_any(codes, ['4B'])) AS factor_parental_mental_health,
    bool_or(kind = 'factors' AND list_has_any(codes, ['1A', '1B', '1C', '2A', '2B', '2C'])) AS factor_substance_misuse,
    bool_or(kind = 'factors' AND list_has_any(codes, ['11A', '12A', '13A', '24A'])) AS factor_exploitation,
    bool_or(kind = 'factors' AND list_has_any(codes, ['4A', '4C', '15A'])) AS factor_mental_health_other,
    bool_or(kind = 'factors' AND list_has_any(codes, ['16A', '17A', '18B', '18C', '19B', '19C'])) AS factor_abuse_or_neglect,
    bool_or(kind = 'factors' AND list_has_any(codes, ['13A', '14A', '24A'])) AS factor_crime,
    flatten(list(codes) FILTER (WHERE kind = 'sf_needs')) AS recorded_sf_needs
FROM codes
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE _feat_re_referral AS
SELECT as_of, person_key, true AS re_referral_12m
FROM (SELECT as_of, person_key, claimed,
             lag(claimed) OVER (PARTITION BY person_key, as_of ORDER BY claimed) AS previous
      FROM _feat_known WHERE kind = 'csc_referral')
WHERE claimed > as_of - INTERVAL 12 MONTH AND claimed <= previous + INTERVAL 12 MONTH
GROUP BY ALL;

-- the two latest terms whose attendance had arrived by each as_of
CREATE OR REPLACE TEMP TABLE _feat_term_window AS
SELECT d.as_of, t.term
FROM _feat_as_of d
JOIN (SELECT DISTINCT term, claimed FROM _feat_attendance) t ON t.claimed <= d.as_of
QUALIFY row_number() OVER (PARTITION BY d.as_of ORDER BY t.claimed DESC) <= 2;

CREATE OR REPLACE TEMP TABLE _feat_attendance_rate AS
SELECT w.as_of, a.person_key, 1 - sum(a.missed) / sum(a.possible) AS attendance_rate_2_terms
FROM _feat_term_window w
JOIN _feat_attendance a ON a.term = w.term AND a.seen_from <= w.as_of AND w.as_of < a.seen_to
GROUP BY ALL;

-- a child with two pupil records takes the higher provision (E over K over N)
CREATE OR REPLACE TEMP TABLE _feat_sen_at AS
SELECT d.as_of, s.person_key, s.sen_provision
FROM _feat_sen s
JOIN _feat_as_of d ON s.seen_from <= d.as_of AND d.as_of < s.seen_to
QUALIFY row_number() OVER (PARTITION BY d.as_of, s.person_key
                           ORDER BY CASE s.sen_provision WHEN 'E' THEN 1 WHEN 'K' THEN 2 ELSE 3 END) = 1;

-- each person's family at each month-end: a membership counts once the person was known,
-- for the evidence periods it was made of that were delivered by then and cover the day
-- (identity.family_member periods). A person with no such evidence has no family then
-- (identity's family of one, 'no relationship or co-residence found', has no periods):
-- family_size is 1 and the family's needs are their own.
CREATE OR REPLACE TEMP TABLE _feat_family AS
WITH period AS (
    SELECT f.person_key, f.family_key, coalesce(f.p.valid_from, '-infinity'::DATE) AS valid_from,
           coalesce(f.p.valid_to, 'infinity'::DATE) AS valid_to,
           feat_seen_from(f.p.known_from, (SELECT min(go_live) FROM _feat_go_live)) AS seen_from
    FROM (SELECT person_key, family_key, unnest(periods) AS p FROM identity.family_member) f
)
SELECT d.as_of, f.person_key, f.family_key
FROM period f
JOIN _feat_person_known k USING (person_key)
JOIN _feat_as_of d ON f.valid_from <= d.as_of AND d.as_of < f.valid_to AND f.seen_from <= d.as_of
                  AND k.known_from <= d.as_of
QUALIFY row_number() OVER (PARTITION BY d.as_of, f.person_key
                           ORDER BY f.valid_from DESC, f.family_key) = 1;

CREATE OR REPLACE TEMP TABLE _feat_place AS
WITH held AS (
    SELECT d.as_of, r.person_key, r.postcode
    FROM _feat_residence r
    JOIN _feat_as_of d ON r.valid_from <= d.as_of AND r.seen_from <= d.as_of
                      AND (d.as_of <= r.valid_to OR d.as_of < r.end_seen_from)
    QUALIFY row_number() OVER (PARTITION BY d.as_of, r.person_key ORDER BY r.valid_from DESC, r.household_key) = 1
), postcode AS (
    SELECT postcode, district, imd_decile FROM history.reference__postcodes
    QUALIFY row_number() OVER (PARTITION BY postcode ORDER BY valid_from DESC) = 1
)
SELECT h.as_of, h.person_key, p.district, p.imd_decile
FROM held h LEFT JOIN postcode p USING (postcode);

-- a move: a residence begun in the 12 months that is not the first of the person's
-- residences known at as_of
CREATE OR REPLACE TEMP TABLE _feat_moves AS
WITH known AS (  -- each household as known at as_of: from its earliest residence known then
    SELECT d.as_of, r.person_key, r.household_key, min(r.valid_from) AS valid_from
    FROM _feat_residence r
    JOIN _feat_as_of d ON r.seen_from <= d.as_of AND r.valid_from <= d.as_of
    GROUP BY ALL
), ranked AS (
    SELECT *, valid_from = min(valid_from) OVER (PARTITION BY as_of, person_key) AS is_first FROM known
)
SELECT as_of, person_key, count(*) AS moves_12m
FROM ranked
WHERE NOT is_first AND valid_from > as_of - INTERVAL 12 MONTH
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE _feat_child_month AS
SELECT c.person_key, f.family_key, c.as_of, c.age_years,
       CASE WHEN c.age_years < 5 THEN '0-4' WHEN c.age_years < 11 THEN '5-10'
            WHEN c.age_years < 16 THEN '11-15' ELSE '16-17' END AS age_band,
       coalesce(c.sex, 'U') AS sex, coalesce(eth.ethnicity_group, 'Not known') AS ethnicity_group,
       pl.district, pl.imd_decile,
       ar.attendance_rate_2_terms,
       coalesce(1 - ar.attendance_rate_2_terms >= 0.10, false) AS persistent_absence,
       coalesce(1 - ar.attendance_rate_2_terms >= 0.50, false) AS severe_absence,
       coalesce(a.suspensions_12m, 0) AS suspensions_12m,
       coalesce(a.permanently_excluded, false) AS permanently_excluded,
       coalesce(a.home_educated, false) AS home_educated,
       coalesce(a.missing_education, false) AS missing_education,
       sen.sen_provision,
       coalesce(a.free_school_meals, false) AS free_school_meals,
       coalesce(a.mash_contacts_12m, 0) AS mash_contacts_12m,
       coalesce(a.mash_red_12m, 0) AS mash_red_12m,
       coalesce(a.prior_eh_episodes, 0) AS prior_eh_episodes,
       coalesce(a.open_to_early_help, false) AS open_to_early_help,
       coalesce(a.prior_cin_plans, 0) AS prior_cin_plans,
       coalesce(a.prior_cp_plans, 0) AS prior_cp_plans,
       coalesce(a.prior_cla_episodes, 0) AS prior_cla_episodes,
       coalesce(a.open_to_social_care, false) AS open_to_social_care,
       coalesce(a.open_cp_or_cla, false) AS open_cp_or_cla,
       coalesce(a.csc_referrals_12m, 0) AS csc_referrals_12m,
       coalesce(rr.re_referral_12m, false) AS re_referral_12m,
       coalesce(fc.factor_domestic_abuse, false) AS factor_domestic_abuse,
       coalesce(fc.factor_parental_mental_health, false) AS factor_parental_mental_health,
       coalesce(fc.factor_substance_misuse, false) AS factor_substance_misuse,
       coalesce(fc.factor_exploitation, false) AS factor_exploitation,
       coalesce(fc.factor_mental_health_other, false) AS factor_mental_health_other,
       coalesce(fc.factor_abuse_or_neglect, false) AS factor_abuse_or_neglect,
       coalesce(fc.factor_crime, false) AS factor_crime,
       coalesce(a.missed_health_reviews_12m, 0) AS missed_health_reviews_12m,
       coalesce(a.camhs_referrals_12m, 0) AS camhs_referrals_12m,
       coalesce(m.moves_12m, 0) AS moves_12m,
       coalesce(fc.recorded_sf_needs, []) AS recorded_sf_needs,
       pl.person_key IS NOT NULL AS resident_at_as_of
FROM _feat_cohort c
LEFT JOIN _feat_activity a USING (as_of, person_key)
LEFT JOIN _feat_codes fc USING (as_of, person_key)
LEFT JOIN _feat_re_referral rr USING (as_of, person_key)
LEFT JOIN _feat_attendance_rate ar USING (as_of, person_key)
LEFT JOIN _feat_family f USING (as_of, person_key)
LEFT JOIN _feat_place pl USING (as_of, person_key)
LEFT JOIN _feat_moves m USING (as_of, person_key)
LEFT JOIN _feat_sen_at sen USING (as_of, person_key)
LEFT JOIN _feat_ethnicity eth USING (as_of, person_key);
