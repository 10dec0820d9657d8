-- Health facts, from the 0-19 nursing and CAMHS FHIR export (Encounter, ServiceRequest).
-- Every table takes each record's newest history version. A resource the export stopped
-- carrying is left out as withdrawn, unless the patient's record was dropped too (left the
-- register): then the past event stands, flagged source_deleted.
-- person_key from the subject's Patient id (identity record health/Patient); family_key is
-- the child's family on the event date (identity.family_member), else their current family.

-- model.fact_health_contact: one row per health-visiting or school-nursing contact.
-- Grain: encounter_id (Encounter id).
--   contact_at   the contact's DATE: the staged export keeps period.start as a date only,
--                so no time of day is known (contact_date repeats it)
--   review_type  ANT / NBV / 68W / 12M / 2YR / NCMP / SAFE; status finished / cancelled /
--                entered-in-error
--   attendance   seen / dna / cancelled_patient / cancelled_provider (codes 5 / 3 / 2 / 4)
CREATE OR REPLACE TABLE model.fact_health_contact AS
WITH encounter AS (
    SELECT h.*, rp.person_key, coalesce(rp.record_deleted, false) AS person_record_deleted
    FROM (SELECT * FROM history.health__encounters
          QUALIFY row_number() OVER (PARTITION BY encounter_id ORDER BY valid_from DESC) = 1) h
    LEFT JOIN _record_person rp
        ON rp.system = 'health' AND rp.table_name = 'Patient' AND rp.record_id = h.patient_id
)
SELECT e.encounter_id,
       e.person_key,
       family_on(e.person_key, e.start_date) AS family_key,
       e.patient_id,
       e.review_type,
       e.start_date AS contact_at,
       e.start_date AS contact_date,
       e.status,
       CASE e.attendance_status WHEN '5' THEN 'seen' WHEN '3' THEN 'dna'
                                WHEN '2' THEN 'cancelled_patient' WHEN '4' THEN 'cancelled_provider' END AS attendance,
       e.is_deleted AS source_deleted
FROM encounter e
WHERE NOT e.is_deleted OR e.person_record_deleted
ORDER BY e.encounter_id;

-- model.fact_camhs_referral: one row per CAMHS referral.
-- Grain: request_id (ServiceRequest id).
--   received_date   authoredOn; source_code the requester code (CAMHS list), source_group
--                   harmonised (model.ref_referral_source, 'camhs')
--   priority        routine / urgent / asap; status active / completed / revoked
--   reason_codes    the reasonCode codes as a list
CREATE OR REPLACE TABLE model.fact_camhs_referral AS
WITH request AS (
    SELECT h.*, rp.person_key, coalesce(rp.record_deleted, false) AS person_record_deleted
    FROM (SELECT * FROM history.health__service_requests
          QUALIFY row_number() OVER (PARTITION BY service_request_id ORDER BY valid_from DESC) = 1) h
    LEFT JOIN _record_person rp
        ON rp.system = 'health' AND rp.table_name = 'Patient' AND rp.record_id = h.patient_id
)
SELECT r.service_request_id AS request_id,
       r.person_key,
       family_on(r.person_key, r.authored_on) AS family_key,
       r.patient_id,
       r.authored_on AS received_date,
       r.requester AS source_code,
       coalesce(rs.source_group, 'unknown') AS source_group,
       r.priority,
       r.status,
       r.rejection_date,
       r.discharge_date,
       CASE WHEN r.reason_codes IS NOT NULL THEN string_split(r.reason_codes, ';') END AS reason_codes,
       r.is_deleted AS source_deleted
FROM request r
LEFT JOIN model.ref_referral_source rs ON rs.scheme = 'camhs' AND rs.code = r.requester
WHERE NOT r.is_deleted OR r.person_record_deleted
ORDER BY r.service_request_id;
