-- model.dim_date: the calendar. Grain: date (one row per day from 2015-01-01 to 2030-12-31).
-- week_start is the Monday of the date's week; financial_year is the UK public-sector year
-- (1 April to 31 March) written '2024-25', with financial_year_start its first calendar year.
CREATE OR REPLACE TABLE model.dim_date AS
SELECT d::DATE AS date,
       date_trunc('week', d)::DATE AS week_start,
       date_trunc('month', d)::DATE AS month_start,
       last_day(d)::DATE AS month_end,
       year(d)::INTEGER AS year,
       fy::VARCHAR || '-' || lpad(((fy + 1) % 100)::VARCHAR, 2, '0') AS financial_year,
       fy AS financial_year_start,
       quarter(d)::INTEGER AS quarter,
       isodow(d)::INTEGER AS iso_day_of_week,
       isodow(d) >= 6 AS is_weekend
FROM (SELECT d, (year(d) - CASE WHEN month(d) < 4 THEN 1 ELSE 0 END)::INTEGER AS fy
      FROM range(DATE '2015-01-01', DATE '2031-01-01', INTERVAL 1 DAY) t(d))
ORDER BY date;
