-- model.dim_team: one row per team of early help or children's social care, as the workers
-- lists, episodes and referrals name them.
-- Grain: (system, team).
--   district   early help: the district its workers and episodes most often record;
--              social care (Mosaic records no district): the district the team's name ends
--              with ('CSC North' -> NORTH), NULL when the name names none.
CREATE OR REPLACE TABLE model.dim_team AS
WITH districts AS (
    SELECT DISTINCT district FROM _postcode WHERE district IS NOT NULL
),
seen AS (
    SELECT 'early_help' AS system, TEAM AS team, DISTRICT AS district FROM history.early_help__workers
    UNION ALL SELECT 'early_help', TEAM, DISTRICT FROM history.early_help__episodes
    UNION ALL SELECT 'social_care', prof_team, NULL FROM history.social_care__ssd_professionals
    UNION ALL SELECT 'social_care', cine_referral_team, NULL FROM history.social_care__ssd_cin_episodes
),
named AS (
    -- the district a team's name ends with (longest match wins)
    SELECT DISTINCT s.system, s.team,
           first(d.district ORDER BY length(d.district) DESC) OVER (PARTITION BY s.system, s.team) AS district
    FROM (SELECT DISTINCT system, team FROM seen WHERE team IS NOT NULL) s
    LEFT JOIN districts d ON upper(trim(s.team)) LIKE '%' || upper(d.district)
),
recorded AS (
    SELECT system, team, mode(district) AS district
    FROM seen WHERE team IS NOT NULL AND district IS NOT NULL
    GROUP BY ALL
)
SELECT n.system, n.team, coalesce(r.district, n.district) AS district
FROM named n
LEFT JOIN recorded r USING (system, team)
ORDER BY n.system, n.team;
