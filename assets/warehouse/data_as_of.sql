-- data_as_of(): the newest extract date any source delivered. It is the reference date of
-- the model build and of the features (ages, "current", the features' last month-end), so
-- a rebuild of the same drops gives the same tables whatever the clock says.
CREATE OR REPLACE TEMP MACRO data_as_of() AS (
    SELECT greatest(
        (SELECT max(valid_from) FROM history.education__pupils),
        (SELECT max(valid_from) FROM history.health__patients),
        (SELECT max(valid_from) FROM history.social_care__ssd_person),
        (SELECT max(valid_from) FROM history.early_help__family_members),
        (SELECT max(extract_date) FROM history.mash__contacts))
);
