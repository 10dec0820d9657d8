-- model.dim_district: one row per district team area (NORTH, EAST, SOUTH, WEST, CENTRAL in
-- the reference postcodes, plus any other a school or team names).
-- Grain: district.
--   children            persons with is_child in model.dim_person whose postcode lies in it
--   imd_decile_median   median IMD decile of the district's LSOAs (each LSOA counted once)
CREATE OR REPLACE TABLE model.dim_district AS
WITH districts AS (
    SELECT district FROM _postcode
    UNION SELECT district FROM model.dim_school
    UNION SELECT district FROM model.dim_team
),
areas AS (
    SELECT district, median(imd_decile) AS imd_decile_median, count(*) AS lsoas
    FROM (SELECT DISTINCT district, lsoa, imd_decile FROM _postcode WHERE lsoa IS NOT NULL)
    GROUP BY district
),
people AS (
    SELECT district, count(*) FILTER (WHERE is_child) AS children, count(*) AS persons
    FROM model.dim_person WHERE district IS NOT NULL
    GROUP BY district
)
SELECT d.district,
       coalesce(p.children, 0) AS children,
       a.imd_decile_median,
       coalesce(p.persons, 0) AS persons,
       coalesce(a.lsoas, 0) AS lsoas
FROM (SELECT district FROM districts WHERE district IS NOT NULL) d
LEFT JOIN areas a USING (district)
LEFT JOIN people p USING (district)
ORDER BY d.district;
