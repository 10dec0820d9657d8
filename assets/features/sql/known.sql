-- Point-in-time scaffolding for the feature tables (TEMP: gone when the build's connection
-- ends; nothing here is published).
--
-- What the warehouse "knew" at a month-end D is decided by two dates on every record:
--   seen_from .. seen_to   when the delivered version was held: from the drop that first
--                          delivered it (history valid_from) to the drop that replaced or
--                          removed it. A record typed in late and backdated therefore counts
--                          from its delivery, not from the date it claims.
--   claimed                the date the record says the event happened (referral date, plan
--                          start, contact received ...). A record counts at D only when
--                          seen_from <= D < seen_to AND claimed <= D; an end date, a rating
--                          or a decision is used only when its own date is <= D.
-- The systems' first drop (go-live) is a full extract of records made before the warehouse
-- existed: nobody delivered them earlier, so under rule 'backload_as_claimed' the go-live
-- version is taken as known from the dates it claims (seen_from = -infinity), and masked by
-- those dates as above. Rule 'strict' counts it from go-live like any other delivery, which
-- leaves every month before go-live empty. The rule in force is written to features.window.
--
-- _feat_as_of: the month-ends features are built for. Grain: as_of.
-- _feat_go_live: each system's first extract date. Grain: system.
-- _feat_person_of: every identity record with its person_key. Grain: (system, table_name, record_id).
-- _feat_person_known: when each person was first known. Grain: person_key.
-- _feat_child: every person with a birth date, with birth date and sex. Grain: person_key.

CREATE OR REPLACE TEMP TABLE _feat_as_of AS
SELECT CAST(month_end AS DATE) AS as_of
FROM (SELECT unnest(generate_series(DATE '${first_as_of}' + INTERVAL 1 DAY,
                                    DATE '${last_as_of}' + INTERVAL 1 DAY, INTERVAL 1 MONTH))
             - INTERVAL 1 DAY AS month_end);

CREATE OR REPLACE TEMP TABLE _feat_go_live AS
SELECT 'education' AS system, min(valid_from) AS go_live FROM history.education__pupils
UNION ALL SELECT 'health', min(valid_from) FROM history.health__patients
UNION ALL SELECT 'social_care', min(valid_from) FROM history.social_care__ssd_person
UNION ALL SELECT 'early_help', min(valid_from) FROM history.early_help__family_members
UNION ALL SELECT 'mash', min(extract_date) FROM history.mash__contacts;

-- The knowledge rule, in one place.
CREATE OR REPLACE TEMP MACRO feat_seen_from(delivered, go_live) AS (
    CASE WHEN ${backload_as_claimed} AND delivered <= go_live THEN '-infinity'::DATE
         ELSE CAST(delivered AS DATE) END);

CREATE OR REPLACE TEMP MACRO feat_seen_to(replaced) AS (coalesce(CAST(replaced AS DATE), 'infinity'::DATE));

-- A date a record claims, as a DATE (Mosaic datetimes are local wall-clock times).
CREATE OR REPLACE TEMP MACRO feat_day(t) AS (CAST(t AS DATE));

CREATE OR REPLACE TEMP TABLE _feat_person_of AS
SELECT system, table_name, record_id, person_key FROM identity.person_record;

-- _feat_person_known: the first day the warehouse knew of each person, from the delivery
-- of their first record (under the knowledge rule): a parent first recorded after D is no
-- member of anyone's family at D. Grain: person_key.
CREATE OR REPLACE TEMP TABLE _feat_person_known AS
SELECT p.person_key, min(feat_seen_from(s.first_delivered, g.go_live)) AS known_from
FROM _feat_person_of p
JOIN identity.source_person s USING (system, table_name, record_id)
JOIN _feat_go_live g USING (system)
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE _feat_child AS
SELECT person_key, dob, sex FROM identity.person WHERE dob IS NOT NULL;
