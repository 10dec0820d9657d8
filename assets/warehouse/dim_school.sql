-- model.dim_school: one row per school (reference schools.csv), as last delivered. A school
-- the reference list no longer carries is kept (is_listed = false) so that past attendance
-- and exclusions still find it.
-- Grain: urn.
CREATE OR REPLACE TABLE model.dim_school AS
SELECT urn, laestab, name, phase, district, postcode, NOT is_deleted AS is_listed
FROM history.reference__schools
QUALIFY row_number() OVER (PARTITION BY urn ORDER BY valid_from DESC) = 1
ORDER BY urn;
