-- marts.key_worker_caseload_weekly: how many families each early help key worker holds,
-- week by week, against the standard of 10 to 12 families per full-time worker.
--
-- Grain: one row per (week_start, key_worker_id) for every week in which the key worker
-- held at least one family (a week with no family held has no row).
--
-- Reads: model.fact_eh_episode (family_id, family_key, key_worker_id, allocated_date,
-- end_date, team, district), model.dim_worker (system = 'early_help': worker_id, team,
-- district, fte), model.dim_family (family_key, children), _mart_week (_calendar.sql).
--
-- Measures:
--   held episode     an episode with a key worker counts in a week when
--                    allocated_date <= week_start + 6 AND (end_date IS NULL OR end_date >= week_start)
--                    (held on any day of the week, Monday to Sunday).
--   families         distinct families among the held episodes, by family_key (by
--                    'early_help:' || family_id when the family has no family_key): a family
--                    re-registered under a new FAMILY_ID with two open episodes counts once.
--   children         sum over those families of dim_family.children (children in the family
--                    now), and at least 1 per family (the referred child) when dim_family
--                    has no row or says 0.
--   fte              dim_worker.fte of the early help worker (NULL when unknown).
--   families_per_fte round(families / fte, 2); NULL when fte is NULL or 0.
--   within_standard  families_per_fte BETWEEN 10 AND 12 (both ends included: 0.5 FTE with
--                    6 families = 12.0 is within).
--   above_standard   families_per_fte > 12 (0.5 FTE with 7 families = 14.0 is above).
--                    Both flags are NULL when fte is unknown; a caseload under 10 per FTE
--                    is neither.
--   team, district   the worker's (dim_worker), else those of the worker's most recently
--                    allocated held episode.

CREATE OR REPLACE TABLE marts.key_worker_caseload_weekly AS
WITH held AS (
    SELECT w.week_start, e.key_worker_id,
           coalesce(e.family_key, 'early_help:' || e.family_id) AS family,
           e.team, e.district, e.allocated_date
    FROM model.fact_eh_episode AS e
    JOIN _mart_week AS w
      ON e.allocated_date <= w.week_end
     AND (e.end_date IS NULL OR e.end_date >= w.week_start)
    WHERE e.key_worker_id IS NOT NULL
),
per_week AS (
    SELECT week_start, key_worker_id,
           arg_max(team, allocated_date) AS episode_team,
           arg_max(district, allocated_date) AS episode_district
    FROM held
    GROUP BY week_start, key_worker_id
),
family_held AS (
    SELECT DISTINCT h.week_start, h.key_worker_id, h.family,
           greatest(coalesce(f.children, 0), 1) AS children
    FROM held AS h
    LEFT JOIN model.dim_family AS f ON f.family_key = h.family
),
counted AS (
    SELECT week_start, key_worker_id, count(*) AS families, CAST(sum(children) AS BIGINT) AS children
    FROM family_held
    GROUP BY week_start, key_worker_id
),
worker AS (
    SELECT worker_id, team, district, CAST(fte AS DOUBLE) AS fte
    FROM model.dim_worker
    WHERE system = 'early_help'
),
rated AS (
    SELECT c.week_start, c.key_worker_id,
           coalesce(w.team, p.episode_team) AS team,
           coalesce(w.district, p.episode_district) AS district,
           w.fte, c.families, c.children,
           CASE WHEN w.fte > 0 THEN round(c.families / w.fte, 2) END AS families_per_fte
    FROM counted AS c
    JOIN per_week AS p USING (week_start, key_worker_id)
    LEFT JOIN worker AS w ON w.worker_id = c.key_worker_id
)
SELECT week_start, key_worker_id, team, district, fte, families, children, families_per_fte,
       families_per_fte BETWEEN 10 AND 12 AS within_standard,
       families_per_fte > 12 AS above_standard
FROM rated
ORDER BY week_start, key_worker_id;
