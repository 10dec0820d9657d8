-- Calendar of the marts (temporary tables, dropped by build_marts): the days, weeks and
-- months the data covers. Nothing here reads today's date, so a rebuild of the same data
-- gives the same marts on any day.
--
-- _mart_range: one row. data_start / data_end = the earliest / latest event date in the
--   model facts the marts read:
--     model.fact_mash_contact   received_at, as a Europe/London local date
--     model.fact_eh_referral    referral_date
--     model.fact_eh_episode     start_date, allocated_date, end_date
--     model.fact_csc_referral   referral_date, close_date
--     model.fact_cin_plan, model.fact_cp_plan, model.fact_cla_episode   start_date, end_date
-- _mart_month: one row per calendar month from the month of data_start to the month of
--   data_end: month_start (1st), month_end (last day), and
--   as_at = least(month_end, data_end): the day an "at month end" measure is taken. It is
--   the month end, except in the latest month when the data stops before the month ends
--   (then it is the last day of data: nothing is assumed about days not yet seen).
-- _mart_week: one row per Monday-to-Sunday week from the week of data_start to the week of
--   data_end: week_start (Monday), week_end (Sunday).

CREATE OR REPLACE TEMP TABLE _mart_range AS
SELECT min(d) AS data_start, max(d) AS data_end
FROM (
    SELECT CAST(timezone('Europe/London', received_at) AS DATE) AS d FROM model.fact_mash_contact
    UNION ALL SELECT referral_date FROM model.fact_eh_referral
    UNION ALL SELECT unnest([start_date, allocated_date, end_date]) FROM model.fact_eh_episode
    UNION ALL SELECT unnest([referral_date, close_date]) FROM model.fact_csc_referral
    UNION ALL SELECT unnest([start_date, end_date]) FROM model.fact_cin_plan
    UNION ALL SELECT unnest([start_date, end_date]) FROM model.fact_cp_plan
    UNION ALL SELECT unnest([start_date, end_date]) FROM model.fact_cla_episode
) AS event_date
WHERE d IS NOT NULL;

CREATE OR REPLACE TEMP TABLE _mart_month AS
SELECT CAST(m AS DATE) AS month_start,
       last_day(CAST(m AS DATE)) AS month_end,
       least(last_day(CAST(m AS DATE)), r.data_end) AS as_at
FROM _mart_range AS r,
     generate_series(date_trunc('month', r.data_start), date_trunc('month', r.data_end), INTERVAL 1 MONTH) AS g(m);

CREATE OR REPLACE TEMP TABLE _mart_week AS
SELECT CAST(w AS DATE) AS week_start, CAST(w AS DATE) + 6 AS week_end
FROM _mart_range AS r,
     generate_series(date_trunc('week', r.data_start), date_trunc('week', r.data_end), INTERVAL 7 DAY) AS g(w);
