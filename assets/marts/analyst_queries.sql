-- Example analyst queries: the service's questions, answered from the published warehouse
-- (schemas marts and model). Each query starts at a "-- name: <snake_case>" line, followed
-- by a comment saying which question it answers; tests/marts/test_marts.py runs every one.
-- "Latest" means the latest in the data, never today's date.

-- name: waits_by_district_latest_month
-- How long are families waiting for an early help key worker in each district, in the
-- latest month of the data? Median and 90th-percentile wait (days from episode start to
-- key worker allocation) of the families allocated that month, and how many families are
-- still waiting at month end (or at the last day of data, as_at), of whom how many for more
-- than 90 days. Districts with the most long waits first.
SELECT month_start, district, allocated, median_wait_days, p90_wait_days,
       waiting_at_month_end, waiting_over_90_days, as_at
FROM marts.eh_waits_by_district_month
WHERE month_start = (SELECT max(month_start) FROM marts.eh_waits_by_district_month)
ORDER BY waiting_over_90_days DESC, waiting_at_month_end DESC, district;

-- name: mash_24h_compliance_last_month
-- Did the MASH meet its decision targets last month (the latest complete month in the
-- data: the data runs past its last day)? Share of contacts decided within 24 hours of
-- receipt, and of red-rated contacts within 4 hours, on elapsed time between instants.
SELECT month_start, contacts, decided, decided_within_24h,
       round(100 * share_within_24h, 1) AS pct_within_24h,
       red_contacts, red_decided_within_4h,
       round(100 * share_red_within_4h, 1) AS pct_red_within_4h
FROM marts.mash_timeliness_monthly
WHERE month_start = (SELECT max(month_start) FROM marts.mash_timeliness_monthly WHERE month_complete);

-- name: key_workers_above_12_families_latest_week
-- Which key workers hold more than 12 families per full-time equivalent in the latest week
-- of the data (the standard is 10 to 12)? Most stretched first.
SELECT week_start, key_worker_id, team, district, fte, families, children, families_per_fte
FROM marts.key_worker_caseload_weekly
WHERE week_start = (SELECT max(week_start) FROM marts.key_worker_caseload_weekly)
  AND above_standard
ORDER BY families_per_fte DESC, key_worker_id;

-- name: children_known_to_three_or_more_systems
-- How many children are known to three or more of the five systems (education, health,
-- social care, early help, the MASH), by district? Of those, how many to four or more,
-- and to all five.
SELECT coalesce(district, 'UNKNOWN') AS district,
       count(*) AS children_known_to_3_or_more,
       count(*) FILTER (WHERE system_count >= 4) AS known_to_4_or_more,
       count(*) FILTER (WHERE system_count = 5) AS known_to_all_5
FROM model.dim_person
WHERE is_child AND system_count >= 3
GROUP BY ALL
ORDER BY district;

-- name: children_known_to_three_or_more_systems_list
-- Which children are known to three or more systems, and to which? One row per child, the
-- most widely known first.
SELECT person_key, district, system_count, list_sort(systems) AS systems
FROM model.dim_person
WHERE is_child AND system_count >= 3
ORDER BY system_count DESC, person_key;
