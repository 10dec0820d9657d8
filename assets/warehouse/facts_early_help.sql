-- Early help facts, from the legacy MAST system's REFERRALS.csv and EPISODES.csv.
-- Every table takes each record's newest history version. A record the system stopped
-- delivering (closed as deleted) is left out as withdrawn, unless its person's record was
-- dropped too (the family left the system): then the past event stands, flagged
-- source_deleted. family_key is the referred child's family on the event date
-- (identity.family_member), else their current family, else the family most of the early
-- help family's members belong to now.

-- _eh_family: the identity family most members of an early help FAMILY_ID belong to now.
-- Grain: FAMILY_ID.
CREATE OR REPLACE TEMP TABLE _eh_family AS
SELECT m.FAMILY_ID, mode(cf.family_key ORDER BY cf.family_key) AS family_key
FROM (SELECT FAMILY_ID, PERSON_ID FROM history.early_help__family_members
      QUALIFY row_number() OVER (PARTITION BY FAMILY_ID, PERSON_ID ORDER BY valid_from DESC) = 1) m
JOIN _record_person rp ON rp.system = 'early_help' AND rp.table_name = 'FAMILY_MEMBERS' AND rp.record_id = m.PERSON_ID
JOIN _current_family cf ON cf.person_key = rp.person_key
GROUP BY m.FAMILY_ID;

-- _eh_referral: the newest version of every early help referral with the referred child's
-- person_key. Grain: REFERRAL_ID.
CREATE OR REPLACE TEMP TABLE _eh_referral AS
SELECT r.*, rp.person_key, coalesce(rp.record_deleted, false) AS person_record_deleted
FROM (SELECT * FROM history.early_help__referrals
      QUALIFY row_number() OVER (PARTITION BY REFERRAL_ID ORDER BY valid_from DESC) = 1) r
LEFT JOIN _record_person rp
    ON rp.system = 'early_help' AND rp.table_name = 'FAMILY_MEMBERS' AND rp.record_id = r.PERSON_ID;

-- model.fact_eh_referral: one row per early help referral (request for support).
-- Grain: referral_id (REFERRAL_ID).
--   person_key   the child referred (PERSON_ID); family_id is the early help FAMILY_ID
--   source_group REFERRAL_SOURCE harmonised (model.ref_referral_source, 'cin')
--   route        MASH / DIRECT / STEP_DOWN / VLR / INCLUSION_PANEL
CREATE OR REPLACE TABLE model.fact_eh_referral AS
SELECT r.REFERRAL_ID AS referral_id,
       r.FAMILY_ID AS family_id,
       coalesce(family_on(r.person_key, r.REFERRAL_DATE), ef.family_key) AS family_key,
       r.person_key,
       r.PERSON_ID AS person_id,
       r.REFERRAL_DATE AS referral_date,
       r.REFERRAL_SOURCE AS source_code,
       coalesce(rs.source_group, 'unknown') AS source_group,
       r.ROUTE AS route,
       r.MASH_CONTACT_ID AS mash_contact_id,
       r.ACCEPTED AS accepted,
       r.REASON_NOT_ACCEPTED AS reason_not_accepted,
       r.is_deleted AS source_deleted
FROM _eh_referral r
LEFT JOIN _eh_family ef ON ef.FAMILY_ID = r.FAMILY_ID
LEFT JOIN model.ref_referral_source rs ON rs.scheme = 'cin' AND rs.code = r.REFERRAL_SOURCE
WHERE NOT r.is_deleted OR r.person_record_deleted
ORDER BY r.REFERRAL_ID;

-- model.fact_eh_episode: one row per early help episode (a family's period of support
-- under a key worker).
-- Grain: episode_id (EPISODE_ID).
--   person_key      the child referred (the episode's referral's PERSON_ID)
--   wait_days       allocated_date - start_date in days; NULL while the family waits
--   district, team  as the episode records them
--   end_reason      OUTCOMES_MET / DISENGAGED / MOVED_AWAY / STEP_UP / UNIVERSAL /
--                   CONSENT_WITHDRAWN; step_up_referral_id is the Mosaic cine_referral_id
--   family_key      the child's family on start_date (see the file header)
CREATE OR REPLACE TABLE model.fact_eh_episode AS
WITH episode AS (
    SELECT * FROM history.early_help__episodes
    QUALIFY row_number() OVER (PARTITION BY EPISODE_ID ORDER BY valid_from DESC) = 1
)
SELECT e.EPISODE_ID AS episode_id,
       e.FAMILY_ID AS family_id,
       coalesce(family_on(r.person_key, e.START_DATE), ef.family_key) AS family_key,
       r.person_key,
       e.REFERRAL_ID AS referral_id,
       e.START_DATE AS start_date,
       e.ALLOCATED_DATE AS allocated_date,
       (e.ALLOCATED_DATE - e.START_DATE)::INTEGER AS wait_days,
       e.KEY_WORKER_ID AS key_worker_id,
       e.TEAM AS team,
       e.DISTRICT AS district,
       e.END_DATE AS end_date,
       e.END_REASON AS end_reason,
       e.STEP_UP_REFERRAL_ID AS step_up_referral_id,
       e.is_deleted AS source_deleted
FROM episode e
LEFT JOIN _eh_referral r ON r.REFERRAL_ID = e.REFERRAL_ID
LEFT JOIN _eh_family ef ON ef.FAMILY_ID = e.FAMILY_ID
WHERE NOT e.is_deleted OR coalesce(r.person_record_deleted, false)
ORDER BY e.EPISODE_ID;
