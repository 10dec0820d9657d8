-- features.child_month_label: did the child's case escalate after each month-end?
-- Grain: (person_key, as_of), the rows of features.child_month. Kept apart from the
-- features because it is read from the future: the newest version of every social care
-- record (schema model), whatever was delivered after as_of.
--   person_key              the child
--   as_of                   the month-end
--   escalated_6m            a social care assessment, CP plan or CLA episode began within 6
--                           months after as_of
--   escalated_12m           one began within 12 months after as_of
--   horizon_6m_complete     as_of plus 6 months is on or before the data's last day
--                           (features.window.data_as_of): only then is a false escalated_6m
--                           a real "no"
--   horizon_12m_complete    as_of plus 12 months is on or before the data's last day
--   first_escalation        the first after as_of: 'assessment', 'cp_plan' or 'cla_start'
--   first_escalation_date   its date
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
