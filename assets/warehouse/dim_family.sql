-- model.dim_family: one row per family_key (identity.family: a child with the parents,
-- carers and siblings they live with or are recorded with).
-- Grain: family_key.
--   district, imd_decile   of the postcode most of the family's current members live at
--                          (members who have left count only when nobody is current)
--   members, children, adults, current_members   as identity counts them
CREATE OR REPLACE TABLE model.dim_family AS
WITH member_postcode AS (
    SELECT fm.family_key, pc.postcode, pc.district, pc.imd_decile,
           count(*) FILTER (WHERE fm.valid_to IS NULL) AS current_here,
           count(*) AS ever_here
    FROM identity.family_member fm
    JOIN identity.person p USING (person_key)
    JOIN _postcode pc ON pc.postcode = p.postcode
    GROUP BY ALL
),
home AS (
    SELECT family_key,
           arg_max(district, (current_here, ever_here, postcode)) AS district,
           arg_max(imd_decile, (current_here, ever_here, postcode)) AS imd_decile
    FROM member_postcode
    GROUP BY family_key
)
SELECT f.family_key,
       h.district,
       h.imd_decile::INTEGER AS imd_decile,
       f.members,
       f.children,
       f.adults,
       f.current_members,
       f.valid_from,
       f.valid_to
FROM identity.family f
LEFT JOIN home h USING (family_key)
ORDER BY f.family_key;
