-- Working tables for the model build (TEMP: they live only for the build's connection and
-- are dropped at its end). Nothing here is published.
--
-- _as_of: the build's reference date, data_as_of() (data_as_of.sql): the newest extract
--   date any source delivered. Grain: one row.
-- _record_person: every identity record with its person_key and whether the source no longer
--   carries it (its newest history version was closed as deleted).
--   Grain: (system, table_name, record_id).
-- _postcode: the newest version of every reference postcode, deleted ones included, so an
--   old postcode still finds its district. Grain: postcode.
-- _family_span: identity.family_member made non-overlapping per person: a span is cut where
--   the person's next span starts; open ends are 'infinity'. Grain: (person_key, valid_from).
-- _current_family: the person's current family (the open span), else the one they left last.
--   Grain: person_key.
-- family_on(person_key, day): the family a fact is filed under: the person's family on that
--   day (_family_span), else their current family; NULL for a person in no family.
CREATE OR REPLACE TEMP TABLE _as_of AS SELECT data_as_of() AS as_of;

CREATE OR REPLACE TEMP TABLE _record_person AS
SELECT r.system, r.table_name, r.record_id, r.person_key, coalesce(s.is_deleted, false) AS record_deleted
FROM identity.person_record r
LEFT JOIN identity.standardised_record s USING (record_key);

CREATE OR REPLACE TEMP TABLE _postcode AS
SELECT postcode, district, lsoa, imd_decile
FROM history.reference__postcodes
QUALIFY row_number() OVER (PARTITION BY postcode ORDER BY valid_from DESC) = 1;

CREATE OR REPLACE TEMP TABLE _family_span AS
WITH spans AS (
    SELECT person_key, family_key,
           coalesce(valid_from, '-infinity'::DATE) AS valid_from,
           coalesce(valid_to, 'infinity'::DATE) AS valid_to
    FROM identity.family_member
    -- of two spans starting the same day, the longer one stands
    QUALIFY row_number() OVER (PARTITION BY person_key, coalesce(valid_from, '-infinity'::DATE)
                               ORDER BY coalesce(valid_to, 'infinity'::DATE) DESC, family_key) = 1
)
SELECT person_key, family_key, valid_from,
       least(valid_to, coalesce(lead(valid_from) OVER (PARTITION BY person_key ORDER BY valid_from),
                                'infinity'::DATE)) AS valid_to
FROM spans;

CREATE OR REPLACE TEMP TABLE _current_family AS
SELECT person_key, family_key
FROM identity.family_member
QUALIFY row_number() OVER (PARTITION BY person_key
                           ORDER BY valid_to IS NULL DESC, valid_to DESC, valid_from DESC NULLS LAST, family_key) = 1;

CREATE OR REPLACE TEMP MACRO family_on(person, day) AS coalesce(
    (SELECT fs.family_key FROM _family_span fs
     WHERE fs.person_key = person AND day >= fs.valid_from AND day < fs.valid_to),
    (SELECT cf.family_key FROM _current_family cf WHERE cf.person_key = person));
