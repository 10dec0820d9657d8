-- model.dim_worker: one row per early help key worker (WORKERS.csv) and per social care
-- professional (ssd_professionals), as last delivered; a worker the list no longer carries
-- is kept (is_listed = false), and a worker id that episodes or referrals name but no list
-- holds gets a row with unknown attributes, so every fact's worker finds a row.
-- Grain: (system, worker_id); worker_key = '<system>:<worker_id>' is unique too.
--   early help: is_agency is NULL (not recorded). social care: district from dim_team (the
--   team's name); start_date and end_date are NULL (Mosaic's extract has none).
CREATE OR REPLACE TABLE model.dim_worker AS
WITH listed AS (
    SELECT 'early_help' AS system, WORKER_ID AS worker_id, ROLE AS role, TEAM AS team, DISTRICT AS district,
           FTE AS fte, NULL::BOOLEAN AS is_agency, START_DATE AS start_date, END_DATE AS end_date,
           NOT is_deleted AS is_listed
    FROM history.early_help__workers
    QUALIFY row_number() OVER (PARTITION BY WORKER_ID ORDER BY valid_from DESC) = 1
    UNION ALL
    SELECT 'social_care', w.prof_professional_id, w.prof_role, w.prof_team, t.district,
           w.prof_fte, w.prof_agency_worker, NULL::DATE, NULL::DATE, NOT w.is_deleted
    FROM (SELECT * FROM history.social_care__ssd_professionals
          QUALIFY row_number() OVER (PARTITION BY prof_professional_id ORDER BY valid_from DESC) = 1) w
    LEFT JOIN model.dim_team t ON t.system = 'social_care' AND t.team = w.prof_team
),
named AS (
    SELECT DISTINCT 'early_help' AS system, KEY_WORKER_ID AS worker_id FROM history.early_help__episodes
    WHERE KEY_WORKER_ID IS NOT NULL
    UNION
    SELECT DISTINCT 'social_care', cine_referral_worker_id FROM history.social_care__ssd_cin_episodes
    WHERE cine_referral_worker_id IS NOT NULL
)
SELECT system || ':' || worker_id AS worker_key, system, worker_id, role, team, district, fte, is_agency,
       start_date, end_date, is_listed
FROM listed
UNION ALL
SELECT system || ':' || worker_id, system, worker_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, false
FROM named ANTI JOIN listed USING (system, worker_id)
ORDER BY system, worker_id;
