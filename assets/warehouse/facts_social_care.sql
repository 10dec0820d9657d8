-- Children's social care facts, from the Mosaic SSD-shaped tables.
-- Every table takes each record's newest history version. A record Mosaic stopped
-- delivering (closed as deleted) is left out as withdrawn, unless the child's person record
-- was dropped too: then the past event stands, flagged source_deleted.
-- person_key comes from the record's <prefix>_person_id (a Mosaic duplicate resolves to the
-- same person as its master); family_key is the child's family on the start or referral
-- date (identity.family_member), else their current family.

-- model.fact_csc_referral: one row per social care referral (a CIN episode).
-- Grain: referral_id (cine_referral_id).
--   referral_at     the referral instant: Mosaic's local wall-clock time read in Europe/London
--   referral_date   its date; source_group from cine_referral_source_code ('cin' list)
--   nfa             no further action at referral; close_reason RC1..RC9
--   worker_id       cine_referral_worker_id (model.dim_worker, system 'social_care')
CREATE OR REPLACE TABLE model.fact_csc_referral AS
WITH referral AS (
    SELECT h.*, rp.person_key, coalesce(rp.record_deleted, false) AS person_record_deleted,
           h.cine_referral_date::DATE AS referral_date
    FROM (SELECT * FROM history.social_care__ssd_cin_episodes
          QUALIFY row_number() OVER (PARTITION BY cine_referral_id ORDER BY valid_from DESC) = 1) h
    LEFT JOIN _record_person rp
        ON rp.system = 'social_care' AND rp.table_name = 'ssd_person' AND rp.record_id = h.cine_person_id
)
SELECT r.cine_referral_id AS referral_id,
       r.person_key,
       family_on(r.person_key, r.referral_date) AS family_key,
       r.cine_person_id AS person_id,
       r.referral_date,
       timezone('Europe/London', r.cine_referral_date) AS referral_at,
       r.cine_referral_source_code AS source_code,
       coalesce(rs.source_group, 'unknown') AS source_group,
       r.cine_cin_primary_need_code AS primary_need,
       r.cine_referral_nfa AS nfa,
       r.cine_close_date AS close_date,
       r.cine_close_reason AS close_reason,
       r.cine_referral_team AS team,
       r.cine_referral_worker_id AS worker_id,
       r.cine_mash_contact_id AS mash_contact_id,
       r.is_deleted AS source_deleted
FROM referral r
LEFT JOIN model.ref_referral_source rs ON rs.scheme = 'cin' AND rs.code = r.cine_referral_source_code
WHERE NOT r.is_deleted OR r.person_record_deleted
ORDER BY r.cine_referral_id;

-- model.fact_assessment: one row per social care (single / child and family) assessment.
-- Grain: assessment_id (cina_assessment_id).
--   factors   the assessment factor codes (CODES.md), as a list; '21' means none
CREATE OR REPLACE TABLE model.fact_assessment AS
WITH assessment AS (
    SELECT h.*, rp.person_key, coalesce(rp.record_deleted, false) AS person_record_deleted
    FROM (SELECT * FROM history.social_care__ssd_cin_assessments
          QUALIFY row_number() OVER (PARTITION BY cina_assessment_id ORDER BY valid_from DESC) = 1) h
    LEFT JOIN _record_person rp
        ON rp.system = 'social_care' AND rp.table_name = 'ssd_person' AND rp.record_id = h.cina_person_id
)
SELECT a.cina_assessment_id AS assessment_id,
       a.person_key,
       family_on(a.person_key, a.cina_assessment_start_date) AS family_key,
       a.cina_person_id AS person_id,
       a.cina_referral_id AS referral_id,
       a.cina_assessment_start_date AS start_date,
       a.cina_assessment_auth_date AS auth_date,
       a.cina_assessment_child_seen AS child_seen,
       a.cina_assessment_outcome_nfa AS outcome_nfa,
       CAST(a.cina_assessment_factors AS VARCHAR[]) AS factors,
       a.is_deleted AS source_deleted
FROM assessment a
WHERE NOT a.is_deleted OR a.person_record_deleted
ORDER BY a.cina_assessment_id;

-- model.fact_cin_plan: one row per child in need plan. Grain: cin_plan_id (cinp_cin_plan_id).
CREATE OR REPLACE TABLE model.fact_cin_plan AS
WITH plan AS (
    SELECT h.*, rp.person_key, coalesce(rp.record_deleted, false) AS person_record_deleted
    FROM (SELECT * FROM history.social_care__ssd_cin_plans
          QUALIFY row_number() OVER (PARTITION BY cinp_cin_plan_id ORDER BY valid_from DESC) = 1) h
    LEFT JOIN _record_person rp
        ON rp.system = 'social_care' AND rp.table_name = 'ssd_person' AND rp.record_id = h.cinp_person_id
)
SELECT p.cinp_cin_plan_id AS cin_plan_id,
       p.person_key,
       family_on(p.person_key, p.cinp_cin_plan_start_date) AS family_key,
       p.cinp_person_id AS person_id,
       p.cinp_referral_id AS referral_id,  -- the referral (model.fact_csc_referral) the plan follows, where Mosaic records it
       p.cinp_cin_plan_start_date AS start_date,
       p.cinp_cin_plan_end_date AS end_date,
       p.is_deleted AS source_deleted
FROM plan p
WHERE NOT p.is_deleted OR p.person_record_deleted
ORDER BY p.cinp_cin_plan_id;

-- model.fact_cp_plan: one row per child protection plan. Grain: cp_plan_id (cppl_cp_plan_id).
--   initial_category, latest_category   NEG / PHY / SAB / EMO / MUL
CREATE OR REPLACE TABLE model.fact_cp_plan AS
WITH plan AS (
    SELECT h.*, rp.person_key, coalesce(rp.record_deleted, false) AS person_record_deleted
    FROM (SELECT * FROM history.social_care__ssd_cp_plans
          QUALIFY row_number() OVER (PARTITION BY cppl_cp_plan_id ORDER BY valid_from DESC) = 1) h
    LEFT JOIN _record_person rp
        ON rp.system = 'social_care' AND rp.table_name = 'ssd_person' AND rp.record_id = h.cppl_person_id
)
SELECT p.cppl_cp_plan_id AS cp_plan_id,
       p.person_key,
       family_on(p.person_key, p.cppl_cp_plan_start_date) AS family_key,
       p.cppl_person_id AS person_id,
       p.cppl_referral_id AS referral_id,  -- the referral (model.fact_csc_referral) the plan follows, where Mosaic records it
       p.cppl_cp_plan_start_date AS start_date,
       p.cppl_cp_plan_end_date AS end_date,
       p.cppl_cp_plan_initial_category AS initial_category,
       p.cppl_cp_plan_latest_category AS latest_category,
       p.is_deleted AS source_deleted
FROM plan p
WHERE NOT p.is_deleted OR p.person_record_deleted
ORDER BY p.cppl_cp_plan_id;

-- model.fact_cla_episode: one row per looked-after episode.
-- Grain: cla_episode_id (clae_cla_episode_id). Mosaic's CLA episode carries no referral id.
--   end_date      clae_cla_episode_ceased; start_reason (RNE), end_reason (REC),
--   legal_status  C1..J3; primary_need N1..N9
CREATE OR REPLACE TABLE model.fact_cla_episode AS
WITH episode AS (
    SELECT h.*, rp.person_key, coalesce(rp.record_deleted, false) AS person_record_deleted
    FROM (SELECT * FROM history.social_care__ssd_cla_episodes
          QUALIFY row_number() OVER (PARTITION BY clae_cla_episode_id ORDER BY valid_from DESC) = 1) h
    LEFT JOIN _record_person rp
        ON rp.system = 'social_care' AND rp.table_name = 'ssd_person' AND rp.record_id = h.clae_person_id
)
SELECT e.clae_cla_episode_id AS cla_episode_id,
       e.person_key,
       family_on(e.person_key, e.clae_cla_episode_start_date) AS family_key,
       e.clae_person_id AS person_id,
       e.clae_cla_episode_start_date AS start_date,
       e.clae_cla_episode_ceased AS end_date,
       e.clae_cla_episode_start_reason AS start_reason,
       e.clae_cla_episode_ceased_reason AS end_reason,
       e.clae_cla_legal_status AS legal_status,
       e.clae_cla_primary_need_code AS primary_need,
       e.is_deleted AS source_deleted
FROM episode e
WHERE NOT e.is_deleted OR e.person_record_deleted
ORDER BY e.clae_cla_episode_id;

-- model.fact_s47_enquiry: one row per section 47 enquiry.
-- Grain: enquiry_id (s47e_s47_enquiry_id).   outcome: NFA / ICPC / CIN
CREATE OR REPLACE TABLE model.fact_s47_enquiry AS
WITH enquiry AS (
    SELECT h.*, rp.person_key, coalesce(rp.record_deleted, false) AS person_record_deleted
    FROM (SELECT * FROM history.social_care__ssd_s47_enquiry
          QUALIFY row_number() OVER (PARTITION BY s47e_s47_enquiry_id ORDER BY valid_from DESC) = 1) h
    LEFT JOIN _record_person rp
        ON rp.system = 'social_care' AND rp.table_name = 'ssd_person' AND rp.record_id = h.s47e_person_id
)
SELECT e.s47e_s47_enquiry_id AS enquiry_id,
       e.person_key,
       family_on(e.person_key, e.s47e_s47_start_date) AS family_key,
       e.s47e_person_id AS person_id,
       e.s47e_referral_id AS referral_id,
       e.s47e_s47_start_date AS start_date,
       e.s47e_s47_end_date AS end_date,
       e.s47e_s47_outcome AS outcome,
       e.is_deleted AS source_deleted
FROM enquiry e
WHERE NOT e.is_deleted OR e.person_record_deleted
ORDER BY e.s47e_s47_enquiry_id;
