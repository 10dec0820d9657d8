-- marts.eh_waits_by_district_month: how long families wait for an early help key worker,
-- and how many are still waiting, by district and month.
--
-- Grain: one row per (month_start, district), for every month of the data (_mart_month)
-- and every district that has an early help episode (NULL district -> 'UNKNOWN'); months
-- with nothing allocated or waiting have zeros.
--
-- Reads: model.fact_eh_episode (district, start_date, allocated_date, end_date),
-- _mart_month (_calendar.sql).
--
-- Measures (the district is the episode's DISTRICT, the team that will work with the family):
--   wait             allocated_date - start_date, in days (the model's wait_days).
--   allocated        episodes whose allocated_date falls in the month.
--   median_wait_days quantile_cont(wait, 0.5) over the episodes allocated in the month
--                    (interpolated; NULL when none was allocated).
--   p90_wait_days    quantile_cont(wait, 0.9) over the same episodes (interpolated: waits
--                    10, 20, 30, 40 give 37).
--   as_at            the day the "at month end" measures are taken: the month end, or the
--                    last day of data in the latest, partial month.
--   waiting_at_month_end  episodes with start_date <= as_at, not allocated by as_at
--                    (allocated_date IS NULL OR allocated_date > as_at) and not ended by
--                    as_at (end_date IS NULL OR end_date > as_at).
--   waiting_over_90_days  of those, as_at - start_date > 90 (strictly: a family waiting
--                    exactly 90 days is not counted; 91 days is).

CREATE OR REPLACE TABLE marts.eh_waits_by_district_month AS
WITH episode AS (
    SELECT coalesce(district, 'UNKNOWN') AS district, start_date, allocated_date, end_date
    FROM model.fact_eh_episode
    WHERE start_date IS NOT NULL
),
grid AS (
    SELECT m.month_start, m.as_at, d.district
    FROM _mart_month AS m CROSS JOIN (SELECT DISTINCT district FROM episode) AS d
),
allocation AS (
    SELECT CAST(date_trunc('month', allocated_date) AS DATE) AS month_start, district,
           count(*) AS allocated,
           quantile_cont(allocated_date - start_date, 0.5) AS median_wait_days,
           quantile_cont(allocated_date - start_date, 0.9) AS p90_wait_days
    FROM episode
    WHERE allocated_date IS NOT NULL
    GROUP BY ALL
),
waiting AS (
    SELECT g.month_start, g.district,
           count(e.start_date) AS waiting_at_month_end,
           count(e.start_date) FILTER (WHERE g.as_at - e.start_date > 90) AS waiting_over_90_days
    FROM grid AS g
    LEFT JOIN episode AS e
      ON e.district = g.district
     AND e.start_date <= g.as_at
     AND (e.allocated_date IS NULL OR e.allocated_date > g.as_at)
     AND (e.end_date IS NULL OR e.end_date > g.as_at)
    GROUP BY g.month_start, g.district
)
SELECT g.month_start, g.district,
       coalesce(a.allocated, 0) AS allocated,
       a.median_wait_days, a.p90_wait_days,
       w.waiting_at_month_end, w.waiting_over_90_days,
       g.as_at
FROM grid AS g
JOIN waiting AS w USING (month_start, district)
LEFT JOIN allocation AS a USING (month_start, district)
ORDER BY g.month_start, g.district;
