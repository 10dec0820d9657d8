-- Education facts, from Capita ONE's termly census (attendance.csv, exclusions.csv).
-- Every table takes each record's newest history version. A row the census stopped carrying
-- is left out as withdrawn, unless the pupil's own record was dropped too (the pupil left):
-- then the past term or exclusion stands, flagged source_deleted.
-- person_key from ONEPupilID (identity record education/pupils); family_key is the pupil's
-- family on the event date (identity.family_member), else their current family.

-- model.fact_attendance: one row per pupil per school per term (a term in arrears).
-- Grain: (pupil_id, urn, term) — pupil_id is ONEPupilID; term is e.g. '2024-AUT'.
--   term_start, term_end   the term's calendar span, approximated as 1 Jan - 31 Mar (SPR),
--                          1 Apr - 31 Aug (SUM), 1 Sep - 31 Dec (AUT); family_key on term_start
--   absence_rate           (authorised + unauthorised) / possible sessions; NULL when none possible
--   is_persistent_absence  absence_rate >= 0.10; is_severe_absence >= 0.50
CREATE OR REPLACE TABLE model.fact_attendance AS
WITH attendance AS (
    SELECT h.*, rp.person_key, coalesce(rp.record_deleted, false) AS person_record_deleted,
           make_date(TRY_CAST(split_part(h.Term, '-', 1) AS INTEGER),
                     CASE split_part(h.Term, '-', 2) WHEN 'SPR' THEN 1 WHEN 'SUM' THEN 4 WHEN 'AUT' THEN 9 END,
                     1) AS term_start
    FROM (SELECT * FROM history.education__attendance
          QUALIFY row_number() OVER (PARTITION BY ONEPupilID, URN, Term ORDER BY valid_from DESC) = 1) h
    LEFT JOIN _record_person rp
        ON rp.system = 'education' AND rp.table_name = 'pupils' AND rp.record_id = h.ONEPupilID
)
SELECT a.person_key,
       family_on(a.person_key, a.term_start) AS family_key,
       a.ONEPupilID AS pupil_id,
       a.URN AS urn,
       a.Term AS term,
       a.term_start,
       (a.term_start + CASE split_part(a.Term, '-', 2) WHEN 'SPR' THEN INTERVAL 3 MONTH
                                                       WHEN 'SUM' THEN INTERVAL 5 MONTH
                                                       ELSE INTERVAL 4 MONTH END - INTERVAL 1 DAY)::DATE AS term_end,
       a.SessionsPossible AS sessions_possible,
       a.SessionsAuthorised AS sessions_authorised,
       a.SessionsUnauthorised AS sessions_unauthorised,
       CASE WHEN a.SessionsPossible > 0
            THEN (coalesce(a.SessionsAuthorised, 0) + coalesce(a.SessionsUnauthorised, 0)) / a.SessionsPossible END
           AS absence_rate,
       CASE WHEN a.SessionsPossible > 0
            THEN (coalesce(a.SessionsAuthorised, 0) + coalesce(a.SessionsUnauthorised, 0)) >= 0.10 * a.SessionsPossible END
           AS is_persistent_absence,
       CASE WHEN a.SessionsPossible > 0
            THEN (coalesce(a.SessionsAuthorised, 0) + coalesce(a.SessionsUnauthorised, 0)) >= 0.50 * a.SessionsPossible END
           AS is_severe_absence,
       a.is_deleted AS source_deleted
FROM attendance a
WHERE NOT a.is_deleted OR a.person_record_deleted
ORDER BY a.ONEPupilID, a.URN, a.Term;

-- model.fact_exclusion: one row per exclusion (suspension, permanent or lunchtime).
-- Grain: exclusion_id (ExclusionID).
--   category   SUSP / PERM / LUNCH; sessions: half-days excluded; reasons: Reason1..3 as a list
CREATE OR REPLACE TABLE model.fact_exclusion AS
WITH exclusion AS (
    SELECT h.*, rp.person_key, coalesce(rp.record_deleted, false) AS person_record_deleted
    FROM (SELECT * FROM history.education__exclusions
          QUALIFY row_number() OVER (PARTITION BY ExclusionID ORDER BY valid_from DESC) = 1) h
    LEFT JOIN _record_person rp
        ON rp.system = 'education' AND rp.table_name = 'pupils' AND rp.record_id = h.ONEPupilID
)
SELECT x.ExclusionID AS exclusion_id,
       x.person_key,
       family_on(x.person_key, x.StartDate) AS family_key,
       x.ONEPupilID AS pupil_id,
       x.URN AS urn,
       x.Category AS category,
       x.StartDate AS start_date,
       x.Sessions AS sessions,
       list_filter([x.Reason1, x.Reason2, x.Reason3], lambda r: r IS NOT NULL) AS reasons,
       x.is_deleted AS source_deleted
FROM exclusion x
WHERE NOT x.is_deleted OR x.person_record_deleted
ORDER BY x.ExclusionID;
