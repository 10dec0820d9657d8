-- features.family_month: each family's Supporting Families headline needs at each month-end,
-- derived from what was known about its children then (child_values.sql), plus the needs an
-- early help assessment recorded for it in the 12 months. Grain: (family_key, as_of).
--   family_key          the family (identity.family_member)
--   as_of               the month-end
--   members             people in the family on as_of
--   children            of those, children known to features.child_month on as_of
--   need_edu            EDU: a child persistently absent, suspended in 12m, permanently
--                       excluded or missing education
--   need_eyd            EYD: a child under 5 who missed a health-visiting review in 12m
--   need_hea            HEA: a CAMHS referral in 12m, or a mental health or self-harm factor
--   need_sub            SUB: a substance misuse factor
--   need_rel            REL: only where an early help assessment recorded it
--   need_safe           SAFE: an abuse, neglect or exploitation factor, or a child open to
--                       social care
--   need_cri            CRI: a gangs, criminal exploitation or antisocial behaviour factor
--   need_da             DA: a domestic abuse factor
--   need_hou            HOU: a child who moved twice or more in 12m
--   need_fin            FIN: a child with free school meals
--   (each need is also met when an early help assessment recorded it in the 12 months)
--   needs               the headline needs met, as codes
--   needs_count         how many
--   sf_eligible         three or more: the programme's rule
--   children_on_cp_or_cla  children of the family with a CP plan or CLA episode open on as_of
CREATE OR REPLACE TEMP TABLE _feat_unit_needs AS
WITH size AS (
    SELECT f.as_of, f.family_key, count(*) AS members,
           count(*) FILTER (WHERE c.age_years < 18) AS children
    FROM _feat_family f
    LEFT JOIN _feat_cohort c USING (as_of, person_key)
    GROUP BY ALL
), flags AS (
    -- a child in no known family is a family of one (unit '~' || person_key), as in
    -- family_size: their own needs are the family's (_feat_unit_needs)
    SELECT as_of, coalesce(family_key, '~' || person_key) AS unit, family_key,
        bool_or(persistent_absence OR suspensions_12m > 0 OR permanently_excluded OR missing_education
                OR list_contains(recorded_sf_needs, 'EDU')) AS need_edu,
        bool_or((age_years < 5 AND missed_health_reviews_12m > 0) OR list_contains(recorded_sf_needs, 'EYD')) AS need_eyd,
        bool_or(camhs_referrals_12m > 0 OR factor_mental_health_other OR factor_parental_mental_health
                OR list_contains(recorded_sf_needs, 'HEA')) AS need_hea,
        bool_or(factor_substance_misuse OR list_contains(recorded_sf_needs, 'SUB')) AS need_sub,
        bool_or(list_contains(recorded_sf_needs, 'REL')) AS need_rel,
        bool_or(factor_abuse_or_neglect OR factor_exploitation OR open_to_social_care
                OR list_contains(recorded_sf_needs, 'SAFE')) AS need_safe,
        bool_or(factor_crime OR list_contains(recorded_sf_needs, 'CRI')) AS need_cri,
        bool_or(factor_domestic_abuse OR list_contains(recorded_sf_needs, 'DA')) AS need_da,
        bool_or(moves_12m >= 2 OR list_contains(recorded_sf_needs, 'HOU')) AS need_hou,
        bool_or(free_school_meals OR list_contains(recorded_sf_needs, 'FIN')) AS need_fin,
        count(*) FILTER (WHERE open_cp_or_cla) AS children_on_cp_or_cla
    FROM _feat_child_month
    GROUP BY ALL
), listed AS (
    SELECT *, list_filter(['EDU', 'EYD', 'HEA', 'SUB', 'REL', 'SAFE', 'CRI', 'DA', 'HOU', 'FIN'],
                          lambda code, i: [need_edu, need_eyd, need_hea, need_sub, need_rel,
                                        need_safe, need_cri, need_da, need_hou, need_fin][i]) AS needs
    FROM flags
)
SELECT coalesce(l.unit, s.family_key) AS unit, coalesce(s.family_key, l.family_key) AS family_key,
       coalesce(s.as_of, l.as_of) AS as_of, s.members, s.children,
       l.need_edu, l.need_eyd, l.need_hea, l.need_sub, l.need_rel, l.need_safe, l.need_cri,
       l.need_da, l.need_hou, l.need_fin,
       coalesce(l.needs, []) AS needs, len(coalesce(l.needs, [])) AS needs_count,
       len(coalesce(l.needs, [])) >= 3 AS sf_eligible,
       coalesce(l.children_on_cp_or_cla, 0) AS children_on_cp_or_cla
FROM listed l
FULL JOIN size s ON s.as_of = l.as_of AND s.family_key = l.family_key;

CREATE OR REPLACE TABLE features.family_month AS
SELECT * EXCLUDE (unit) FROM _feat_unit_needs WHERE family_key IS NOT NULL
ORDER BY family_key, as_of;
