-- features.child_month_label: did the child's case escalate after each month-end?
-- Grain: (person_key, as_of), the rows of features.child_month. Kept apart from the
-- features because it is read from the future: the newest version of every social care
-- record (schema model), whatever was delivered after as_of.
--   first_escalation       the first of a social care assessment start ('assessment'), a CP
--                          plan start ('cp_plan') or a CLA episode start ('cla_start') after
--                          as_of; first_escalation_date its date
--   escalated_6m/_12m      that date falls within 6 / 12 months after as_of
--   horizon_6m/_12m_complete   as_of plus the horizon is on or before the data's last day
--                          (${data_as_of}): only then is a false label a real "no"
CREATE OR REPLACE TABLE features.child_month_label AS
WITH escalation AS (
    SELECT person_key, start_date AS on_date, 'assessment' AS kind FROM model.fact_assessment
    UNION ALL SELECT person_key, start_date, 'cp_plan' FROM model.fact_cp_plan
    UNION ALL SELECT person_key, start_date, 'cla_start' FROM model.fact_cla_episode
), first_after AS (
    SELECT c.person_key, c.as_of, e.kind, e.on_date
    FROM features.child_month c
    JOIN escalation e ON e.person_key = c.person_key AND e.on_date > c.as_of
    QUALIFY row_number() OVER (PARTITION BY c.person_key, c.as_of ORDER BY e.on_date, e.kind) = 1
)
SELECT c.person_key, c.as_of,
       coalesce(f.on_date <= c.as_of + INTERVAL 6 MONTH, false) AS escalated_6m,
       coalesce(f.on_date <= c.as_of + INTERVAL 12 MONTH, false) AS escalated_12m,
       c.as_of + INTERVAL 6 MONTH <= DATE '${data_as_of}' AS horizon_6m_complete,
       c.as_of + INTERVAL 12 MONTH <= DATE '${data_as_of}' AS horizon_12m_complete,
       f.kind AS first_escalation, f.on_date AS first_escalation_date
FROM features.child_month c
LEFT JOIN first_after f USING (person_key, as_of)
ORDER BY c.person_key, c.as_of;
