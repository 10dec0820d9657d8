-- marts.step_flows_monthly: families and children moving between early help and social
-- care, month by month.
--
-- Grain: one row per (month_start, flow) for every month of the data (_mart_month) and the
-- two flows (zero when none).
--
-- Reads: model.fact_eh_episode (family_id, family_key, person_key, end_date, end_reason,
-- step_up_referral_id), model.fact_csc_referral (referral_id, person_key),
-- model.fact_eh_referral (family_id, family_key, person_key, referral_date, route),
-- _mart_month (_calendar.sql).
--
-- Measures:
--   flow      'step_up' (early help -> social care): early help episodes closed with
--               end_reason = 'STEP_UP', in the month of the episode's end_date;
--             'step_down' (social care -> early help): early help referrals with
--               route = 'STEP_DOWN' (accepted or not), in the month of referral_date.
--   families  distinct families by family_key (else 'early_help:' || family_id).
--   children  distinct children named on the referral that crosses the boundary:
--               step_up: the person_key of the social care referral the episode names
--               (step_up_referral_id), else the episode's referred child;
--               step_down: the early help referral's child (person_key).
--             A child with no person_key is not counted.

CREATE OR REPLACE TABLE marts.step_flows_monthly AS
WITH flow AS (
    SELECT CAST(date_trunc('month', e.end_date) AS DATE) AS month_start, 'step_up' AS flow,
           coalesce(e.family_key, 'early_help:' || e.family_id) AS family,
           coalesce(r.person_key, e.person_key) AS person_key
    FROM model.fact_eh_episode AS e
    LEFT JOIN model.fact_csc_referral AS r ON r.referral_id = e.step_up_referral_id
    WHERE e.end_reason = 'STEP_UP' AND e.end_date IS NOT NULL
    UNION ALL
    SELECT CAST(date_trunc('month', referral_date) AS DATE), 'step_down',
           coalesce(family_key, 'early_help:' || family_id), person_key
    FROM model.fact_eh_referral
    WHERE route = 'STEP_DOWN' AND referral_date IS NOT NULL
),
counted AS (
    SELECT month_start, flow, count(DISTINCT family) AS families, count(DISTINCT person_key) AS children
    FROM flow
    GROUP BY ALL
)
SELECT m.month_start, f.flow, coalesce(c.families, 0) AS families, coalesce(c.children, 0) AS children
FROM _mart_month AS m
CROSS JOIN (VALUES ('step_up'), ('step_down')) AS f(flow)
LEFT JOIN counted AS c ON c.month_start = m.month_start AND c.flow = f.flow
ORDER BY m.month_start, f.flow DESC;
