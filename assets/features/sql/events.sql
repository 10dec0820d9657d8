-- Every dated fact about a person the features read, from the staged history, as held
-- version by version (see known.sql for seen_from/seen_to and claimed).
--
-- _feat_event: Grain: one row per person, kind and delivered version of a source record.
--   kind        mash_contact | mash_red | csc_referral | assessment | cin_plan | cp_plan |
--               cla | eh_episode | suspension | permanent_exclusion | home_education |
--               missing_education | free_school_meals | missed_health_review |
--               camhs_referral | factors | sf_needs
--   claimed     the date the record gives for the event (for mash_red the rating time; for
--               factors an assessment's authorisation date or a contact's receipt; for
--               sf_needs an early help assessment's completion)
--   ends        the end the record gives (plan end, EHE end, CME resolved ...), or NULL
--   codes       assessment factor codes (factors) or Supporting Families needs (sf_needs)
--   record_id   the source record, so a version is counted once
-- Early help works with families: an episode or assessment counts for every child member of
-- the early help family on its start date.
--
-- _feat_attendance: Grain: (person_key, term, version). Attendance arrives a term in arrears
--   at the next school census, so a term counts from the census after it ends (3rd Thursday
--   of May, October or January), never from the term's own dates.

CREATE OR REPLACE TEMP MACRO feat_third_thursday(y, m) AS (
    make_date(y, m, 1) + CAST((11 - dayofweek(make_date(y, m, 1))) % 7 + 14 AS INTEGER));

CREATE OR REPLACE TEMP TABLE _feat_event AS
WITH go AS (SELECT * FROM _feat_go_live),
sc AS (SELECT go_live FROM go WHERE system = 'social_care'),
ed AS (SELECT go_live FROM go WHERE system = 'education'),
he AS (SELECT go_live FROM go WHERE system = 'health'),
eh AS (SELECT go_live FROM go WHERE system = 'early_help'),
sc_person AS (SELECT record_id, person_key FROM _feat_person_of WHERE system = 'social_care'),
pupil AS (SELECT record_id, person_key FROM _feat_person_of WHERE system = 'education'),
patient AS (SELECT record_id, person_key FROM _feat_person_of
            WHERE system = 'health' AND table_name = 'Patient'),
mash_version AS (
    -- the MASH sends deltas: a contact's state at the end of each extract day is one version
    SELECT m.*, timezone('Europe/London', m.received_at)::DATE AS received,
           feat_seen_from(m.extract_date, (SELECT go_live FROM go WHERE system = 'mash')) AS seen_from,
           feat_seen_to(lead(m.extract_date) OVER (PARTITION BY m.contact_id, m.child_seq
                                                   ORDER BY m.extract_date)) AS seen_to
    FROM (SELECT * FROM history.mash__contacts
          QUALIFY row_number() OVER (PARTITION BY contact_id, child_seq, extract_date
                                     ORDER BY valid_from DESC) = 1) m
),
mash AS (
    SELECT p.person_key, v.*
    FROM mash_version v
    JOIN _feat_person_of p ON p.system = 'mash' AND p.record_id = v.contact_id || ':' || v.child_seq
),
eh_child AS (
    -- each delivered version of a child's membership, held from its drop to the next
    SELECT FAMILY_ID, PERSON_ID, FROM_DATE, TO_DATE, valid_from, valid_to
    FROM history.early_help__family_members
    WHERE ROLE = 'CHILD'
),
eh_family_event AS (
    SELECT 'eh_episode' AS kind, EPISODE_ID AS record_id, FAMILY_ID, START_DATE AS claimed,
           END_DATE AS ends, NULL::VARCHAR[] AS codes, valid_from, valid_to
    FROM history.early_help__episodes
    UNION ALL
    SELECT 'sf_needs', ASSESSMENT_ID, FAMILY_ID, COMPLETED_DATE, NULL,
           string_split(NEEDS, ';'), valid_from, valid_to
    FROM history.early_help__assessments WHERE COMPLETED_DATE IS NOT NULL
)
-- MASH
SELECT person_key, 'mash_contact' AS kind, contact_id || ':' || child_seq AS record_id,
       received AS claimed, NULL::DATE AS ends, NULL::VARCHAR[] AS codes, seen_from, seen_to
FROM mash
UNION ALL
SELECT person_key, 'mash_red', contact_id || ':' || child_seq,
       timezone('Europe/London', rated_at)::DATE, NULL, NULL, seen_from, seen_to
FROM mash WHERE rag = 'R' AND rated_at IS NOT NULL
UNION ALL
SELECT person_key, 'factors', contact_id || ':' || child_seq, received, NULL,
       string_split(concerns, ';'), seen_from, seen_to
FROM mash WHERE concerns IS NOT NULL
-- social care
UNION ALL
SELECT p.person_key, 'csc_referral', h.cine_referral_id, feat_day(h.cine_referral_date),
       feat_day(h.cine_close_date), NULL,
       feat_seen_from(h.valid_from, (SELECT go_live FROM sc)), feat_seen_to(h.valid_to)
FROM history.social_care__ssd_cin_episodes h JOIN sc_person p ON p.record_id = h.cine_person_id
UNION ALL
SELECT p.person_key, 'assessment', h.cina_assessment_id, h.cina_assessment_start_date, NULL, NULL,
       feat_seen_from(h.valid_from, (SELECT go_live FROM sc)), feat_seen_to(h.valid_to)
FROM history.social_care__ssd_cin_assessments h JOIN sc_person p ON p.record_id = h.cina_person_id
UNION ALL
SELECT p.person_key, 'factors', h.cina_assessment_id, h.cina_assessment_auth_date, NULL,
       CAST(h.cina_assessment_factors AS VARCHAR[]),
       feat_seen_from(h.valid_from, (SELECT go_live FROM sc)), feat_seen_to(h.valid_to)
FROM history.social_care__ssd_cin_assessments h JOIN sc_person p ON p.record_id = h.cina_person_id
WHERE h.cina_assessment_auth_date IS NOT NULL
UNION ALL
SELECT p.person_key, 'cin_plan', h.cinp_cin_plan_id, h.cinp_cin_plan_start_date, h.cinp_cin_plan_end_date,
       NULL, feat_seen_from(h.valid_from, (SELECT go_live FROM sc)), feat_seen_to(h.valid_to)
FROM history.social_care__ssd_cin_plans h JOIN sc_person p ON p.record_id = h.cinp_person_id
UNION ALL
SELECT p.person_key, 'cp_plan', h.cppl_cp_plan_id, h.cppl_cp_plan_start_date, h.cppl_cp_plan_end_date,
       NULL, feat_seen_from(h.valid_from, (SELECT go_live FROM sc)), feat_seen_to(h.valid_to)
FROM history.social_care__ssd_cp_plans h JOIN sc_person p ON p.record_id = h.cppl_person_id
UNION ALL
SELECT p.person_key, 'cla', h.clae_cla_episode_id, h.clae_cla_episode_start_date,
       h.clae_cla_episode_ceased, NULL,
       feat_seen_from(h.valid_from, (SELECT go_live FROM sc)), feat_seen_to(h.valid_to)
FROM history.social_care__ssd_cla_episodes h JOIN sc_person p ON p.record_id = h.clae_person_id
-- early help (family-level, to each child member)
UNION ALL
-- an event counts for a child while both the event's version and a version of the
-- membership covering its date were held
SELECT p.person_key, e.kind, e.record_id, e.claimed, e.ends, e.codes,
       feat_seen_from(greatest(e.valid_from, c.valid_from), (SELECT go_live FROM eh)),
       feat_seen_to(least(e.valid_to, c.valid_to))
FROM eh_family_event e
JOIN eh_child c ON c.FAMILY_ID = e.FAMILY_ID
               AND (c.FROM_DATE IS NULL OR c.FROM_DATE <= e.claimed)
               AND (c.TO_DATE IS NULL OR c.TO_DATE >= e.claimed)
               AND c.valid_from < coalesce(e.valid_to, 'infinity'::DATE)
               AND e.valid_from < coalesce(c.valid_to, 'infinity'::DATE)
JOIN _feat_person_of p ON p.system = 'early_help' AND p.record_id = c.PERSON_ID
-- education
UNION ALL
SELECT p.person_key, CASE h.Category WHEN 'PERM' THEN 'permanent_exclusion' ELSE 'suspension' END,
       h.ExclusionID, h.StartDate, NULL, NULL,
       feat_seen_from(h.valid_from, (SELECT go_live FROM ed)), feat_seen_to(h.valid_to)
FROM history.education__exclusions h JOIN pupil p ON p.record_id = h.ONEPupilID
WHERE h.Category IN ('SUSP', 'PERM')
UNION ALL
SELECT p.person_key, 'home_education', h.EHEID, h.StartDate, h.EndDate, NULL,
       feat_seen_from(h.valid_from, (SELECT go_live FROM ed)), feat_seen_to(h.valid_to)
FROM history.education__ehe h JOIN pupil p ON p.record_id = h.ONEPupilID
UNION ALL
SELECT p.person_key, 'missing_education', h.CMEID, h.IdentifiedDate, h.ResolvedDate, NULL,
       feat_seen_from(h.valid_from, (SELECT go_live FROM ed)), feat_seen_to(h.valid_to)
FROM history.education__cme h JOIN pupil p ON p.record_id = h.ONEPupilID
UNION ALL
SELECT p.person_key, 'free_school_meals', h.ONEPupilID || ':' || h.FSMStartDate, h.FSMStartDate,
       h.FSMEndDate, NULL,
       feat_seen_from(h.valid_from, (SELECT go_live FROM ed)), feat_seen_to(h.valid_to)
FROM history.education__fsm h JOIN pupil p ON p.record_id = h.ONEPupilID
-- health
UNION ALL
SELECT p.person_key, 'missed_health_review', h.encounter_id, h.start_date, NULL, NULL,
       feat_seen_from(h.valid_from, (SELECT go_live FROM he)), feat_seen_to(h.valid_to)
FROM history.health__encounters h JOIN patient p ON p.record_id = h.patient_id
WHERE h.attendance_status = '3' AND h.status <> 'entered-in-error'
UNION ALL
SELECT p.person_key, 'camhs_referral', h.service_request_id, h.authored_on, NULL, NULL,
       feat_seen_from(h.valid_from, (SELECT go_live FROM he)), feat_seen_to(h.valid_to)
FROM history.health__service_requests h JOIN patient p ON p.record_id = h.patient_id;

CREATE OR REPLACE TEMP TABLE _feat_attendance AS
SELECT p.person_key, h.Term AS term,
       CASE right(h.Term, 3)
           WHEN 'SPR' THEN feat_third_thursday(CAST(left(h.Term, 4) AS INTEGER), 5)
           WHEN 'SUM' THEN feat_third_thursday(CAST(left(h.Term, 4) AS INTEGER), 10)
           ELSE feat_third_thursday(CAST(left(h.Term, 4) AS INTEGER) + 1, 1) END AS claimed,
       h.SessionsPossible AS possible,
       coalesce(h.SessionsAuthorised, 0) + coalesce(h.SessionsUnauthorised, 0) AS missed,
       feat_seen_from(h.valid_from, (SELECT go_live FROM _feat_go_live WHERE system = 'education')) AS seen_from,
       feat_seen_to(h.valid_to) AS seen_to
FROM history.education__attendance h
JOIN _feat_person_of p ON p.system = 'education' AND p.record_id = h.ONEPupilID
WHERE h.SessionsPossible > 0;

-- SEN provision is a state with no date of its own: it counts from its delivery only.
CREATE OR REPLACE TEMP TABLE _feat_sen AS
SELECT p.person_key, h.SENProvision AS sen_provision,
       CAST(h.valid_from AS DATE) AS seen_from, feat_seen_to(h.valid_to) AS seen_to
FROM history.education__sen h
JOIN _feat_person_of p ON p.system = 'education' AND p.record_id = h.ONEPupilID;
