-- marts.children_open_by_service: how many children each service has open at each month
-- end.
--
-- Grain: one row per (month_end, service) for every month of the data (_mart_month) and the
-- four services 'early_help', 'cin', 'cp', 'cla' (zero when none is open).
--
-- Reads: model.fact_eh_episode (family_id, family_key, start_date, end_date),
-- model.dim_family (family_key, children), model.fact_cin_plan, model.fact_cp_plan,
-- model.fact_cla_episode (person_key, start_date, end_date), _mart_month (_calendar.sql).
--
-- Measures:
--   as_at     (added) the day the count is taken: month_end, or the last day of data in the
--             latest, partial month.
--   open      a plan or episode is open at as_at when start_date <= as_at AND
--             (end_date IS NULL OR end_date > as_at): one ending on the last day of the
--             month is closed at month end; one starting that day is open.
--   children  early_help: early help works with the whole family, so the children of the
--               families with an open episode (waiting for a key worker or allocated):
--               distinct families by family_key (else 'early_help:' || family_id), each
--               counting dim_family.children, and at least 1 (the referred child);
--             cin / cp / cla: distinct person_key with an open CIN plan / CP plan / CLA
--               episode. A child is counted in every service open to them (a child on a
--               CP plan who is also looked after counts in cp and in cla).

CREATE OR REPLACE TABLE marts.children_open_by_service AS
WITH eh_family AS (
    SELECT DISTINCT m.month_end, coalesce(e.family_key, 'early_help:' || e.family_id) AS family
    FROM _mart_month AS m
    JOIN model.fact_eh_episode AS e
      ON e.start_date <= m.as_at AND (e.end_date IS NULL OR e.end_date > m.as_at)
),
eh AS (
    SELECT h.month_end, 'early_help' AS service,
           CAST(sum(greatest(coalesce(f.children, 0), 1)) AS BIGINT) AS children
    FROM eh_family AS h
    LEFT JOIN model.dim_family AS f ON f.family_key = h.family
    GROUP BY h.month_end
),
plan AS (
    SELECT 'cin' AS service, person_key, start_date, end_date FROM model.fact_cin_plan
    UNION ALL SELECT 'cp', person_key, start_date, end_date FROM model.fact_cp_plan
    UNION ALL SELECT 'cla', person_key, start_date, end_date FROM model.fact_cla_episode
),
csc AS (
    SELECT m.month_end, p.service, count(DISTINCT p.person_key) AS children
    FROM _mart_month AS m
    JOIN plan AS p
      ON p.start_date <= m.as_at AND (p.end_date IS NULL OR p.end_date > m.as_at)
    GROUP BY m.month_end, p.service
),
counted AS (SELECT * FROM eh UNION ALL SELECT * FROM csc)
SELECT m.month_end, s.service, coalesce(c.children, 0) AS children, m.as_at
FROM _mart_month AS m
CROSS JOIN (VALUES (1, 'early_help'), (2, 'cin'), (3, 'cp'), (4, 'cla')) AS s(service_order, service)
LEFT JOIN counted AS c ON c.month_end = m.month_end AND c.service = s.service
ORDER BY m.month_end, s.service_order;
