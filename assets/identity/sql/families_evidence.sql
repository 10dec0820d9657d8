-- Families, step 2 of 5: relationship evidence and each person's role.
--
-- fam_evidence (temporary): the source relationships that put people together. Grain: one
-- row per person per evidence group (an early help FAMILY_ID, a Mosaic fami_family_id, or
-- one recorded relationship between two people) per period, with:
--   links     whether the group on its own puts its people into one family:
--             early help FAMILY_ID membership (FROM_DATE .. TO_DATE), Mosaic ssd_family
--             (history valid_from .. valid_to), Mosaic MOTHER, SIBLING, HALF_SIBLING, CARER
--             (rel_start_date .. rel_end_date), health RelatedPerson MTH and GRD (from the
--             child's birth, as health visiting records it at the new birth visit);
--             not linking on their own: Mosaic FATHER and STEP_PARENT and health FTH, since
--             a father often lives apart after separation and would chain his new household
--             to the old one. They still count as evidence (and give periods) when both
--             people are in one family for another reason, such as living together.
-- Successive history versions of one membership or relationship are one row: the latest
-- version's end date wins. Removal from the snapshots ends a membership (early help,
-- ssd_family) or a carer link (CARER, STEP_PARENT, GRD), but not kinship (MOTHER, FATHER,
-- SIBLING, HALF_SIBLING, MTH, FTH): health drops RelatedPerson links when the child turns
-- five, and a mother does not stop being one; kinship ends only at a recorded end date.
--
-- fam_role (temporary): one row per person_key: 'adult' when any source records the person
-- as a parent or carer (early help PARENT/CARER/OTHER ADULT, the adult side of a Mosaic or
-- FHIR relationship, pers_is_mother, a RelatedPerson record); else 'child' when any source
-- records a child (pupil, FHIR Patient, MASH contact, early help CHILD, the child side of a
-- relationship); else by birth date (under 18 on the latest extract date); else 'adult'.

CREATE OR REPLACE TEMP TABLE fam_evidence AS
WITH pr AS (SELECT person_key, system, table_name, record_id FROM fam_src_person_record),
sc AS (SELECT person_key, record_id FROM pr WHERE system = 'social_care' AND table_name = 'ssd_person'),
eh AS (
    SELECT 'eh:' || m.FAMILY_ID AS group_id, pr.person_key,
           'early_help FAMILY_MEMBERS (' || coalesce(max_by(m.ROLE, m.valid_from), '?') || ')' AS evidence, true AS links,
           coalesce(m.FROM_DATE, min(m.valid_from)) AS valid_from,
           max_by({'to': coalesce(m.TO_DATE, m.valid_to)}, m.valid_from)['to'] AS valid_to,
           min(m.valid_from) AS known_from
    FROM fam_src_eh_family_members m
    JOIN pr ON pr.system = 'early_help' AND pr.table_name = 'FAMILY_MEMBERS' AND pr.record_id = m.PERSON_ID
    GROUP BY m.FAMILY_ID, m.PERSON_ID, pr.person_key, m.FROM_DATE
),
scf AS (
    SELECT 'scf:' || f.fami_family_id, sc.person_key, 'social_care ssd_family', true,
           min(f.valid_from), max_by({'to': f.valid_to}, f.valid_from)['to'], min(f.valid_from)
    FROM fam_src_sc_family f JOIN sc ON sc.record_id = f.fami_person_id
    GROUP BY f.fami_family_id, f.fami_person_id, sc.person_key
),
rel AS (
    SELECT r.rel_person_id, r.rel_related_person_id, r.rel_type,
           coalesce(r.rel_start_date, min(r.valid_from)) AS valid_from,
           max_by({'to': coalesce(r.rel_end_date, CASE WHEN r.rel_type IN ('CARER', 'STEP_PARENT') THEN r.valid_to END)},
                  r.valid_from)['to'] AS valid_to,
           min(r.valid_from) AS known_from
    FROM fam_src_sc_relationship r
    GROUP BY r.rel_person_id, r.rel_related_person_id, r.rel_type, r.rel_start_date
),
screl AS (
    SELECT 'screl:' || rel.rel_person_id || '>' || rel.rel_related_person_id || ':' || rel.rel_type || ':'
             || coalesce(CAST(rel.valid_from AS VARCHAR), ''),
           rel.person_key, 'social_care ' || rel.rel_type,
           rel.rel_type IN ('MOTHER', 'SIBLING', 'HALF_SIBLING', 'CARER'), rel.valid_from, rel.valid_to,
           rel.known_from
    FROM (  -- each side of the relationship by an equi-join (an IN or OR join is a slow nested loop)
        SELECT rel.*, sc.person_key FROM rel JOIN sc ON sc.record_id = rel.rel_person_id
        UNION ALL
        SELECT rel.*, sc.person_key FROM rel JOIN sc ON sc.record_id = rel.rel_related_person_id
        WHERE rel.rel_person_id IS DISTINCT FROM rel.rel_related_person_id
    ) rel
),
rp AS (
    SELECT r.related_person_id, r.patient_id, r.relationship,
           min(r.valid_from) AS seen_from, max_by({'to': r.valid_to}, r.valid_from)['to'] AS valid_to
    FROM fam_src_hl_related_persons r GROUP BY r.related_person_id, r.patient_id, r.relationship
),
born AS (SELECT patient_id, min(birth_date) AS birth_date FROM fam_src_hl_patients GROUP BY patient_id),
hrel AS (
    SELECT 'rp:' || rp.related_person_id || ':' || rp.relationship, rp.person_key,
           'health RelatedPerson ' || rp.relationship, rp.relationship IN ('MTH', 'GRD'),
           least(rp.seen_from, coalesce(born.birth_date, rp.seen_from)),
           CASE WHEN rp.relationship = 'GRD' THEN rp.valid_to END, rp.seen_from
    FROM (  -- the adult's record and the child's record, each by an equi-join
        SELECT rp.*, pr.person_key FROM rp
        JOIN pr ON pr.system = 'health' AND pr.table_name = 'RelatedPerson' AND pr.record_id = rp.related_person_id
        UNION ALL
        SELECT rp.*, pr.person_key FROM rp
        JOIN pr ON pr.system = 'health' AND pr.table_name = 'Patient' AND pr.record_id = rp.patient_id
    ) rp LEFT JOIN born USING (patient_id)
)
SELECT * FROM (SELECT * FROM eh UNION ALL SELECT * FROM scf UNION ALL SELECT * FROM screl UNION ALL SELECT * FROM hrel)
WHERE valid_from < coalesce(valid_to, fam_inf());

-- A relationship between two records of the same person (a duplicate) is no evidence.
DELETE FROM fam_evidence WHERE group_id IN (
    SELECT group_id FROM fam_evidence WHERE NOT starts_with(group_id, 'eh:') AND NOT starts_with(group_id, 'scf:')
    GROUP BY group_id HAVING count(DISTINCT person_key) < 2);

CREATE OR REPLACE TEMP TABLE fam_role AS
WITH pr AS (SELECT person_key, system, table_name, record_id FROM fam_src_person_record),
sc AS (SELECT person_key, record_id FROM pr WHERE system = 'social_care' AND table_name = 'ssd_person'),
flags AS (
    SELECT person_key, table_name = 'RelatedPerson' AS adult,
           (system, table_name) IN (('education', 'pupils'), ('health', 'Patient'), ('mash', 'contacts')) AS child
    FROM pr
    UNION ALL
    SELECT pr.person_key, m.ROLE <> 'CHILD', m.ROLE = 'CHILD'
    FROM fam_src_eh_family_members m
    JOIN pr ON pr.system = 'early_help' AND pr.table_name = 'FAMILY_MEMBERS' AND pr.record_id = m.PERSON_ID
    UNION ALL
    SELECT sc.person_key, false, true FROM fam_src_sc_relationship r JOIN sc ON sc.record_id = r.rel_person_id
    UNION ALL
    SELECT sc.person_key, r.rel_type NOT IN ('SIBLING', 'HALF_SIBLING'), r.rel_type IN ('SIBLING', 'HALF_SIBLING')
    FROM fam_src_sc_relationship r JOIN sc ON sc.record_id = r.rel_related_person_id
    UNION ALL
    SELECT sc.person_key, coalesce(p.pers_is_mother, false), false
    FROM fam_src_sc_person p JOIN sc ON sc.record_id = p.pers_person_id
),
dob AS (
    SELECT person_key, max(dob) AS dob FROM (
        SELECT sc.person_key, p.pers_dob AS dob FROM fam_src_sc_person p JOIN sc ON sc.record_id = p.pers_person_id
        UNION ALL
        SELECT pr.person_key, m.DOB FROM fam_src_eh_family_members m
        JOIN pr ON pr.system = 'early_help' AND pr.table_name = 'FAMILY_MEMBERS' AND pr.record_id = m.PERSON_ID)
    GROUP BY person_key
),
as_of AS (
    SELECT max(d) AS d FROM (SELECT max(valid_from) AS d FROM fam_src_sc_person
                             UNION ALL SELECT max(valid_from) FROM fam_src_eh_family_members)
)
SELECT f.person_key,
       CASE WHEN bool_or(f.adult) THEN 'adult'
            WHEN bool_or(f.child) THEN 'child'
            WHEN any_value(dob.dob) > (SELECT d FROM as_of) - INTERVAL 18 YEAR THEN 'child'
            ELSE 'adult' END AS role
FROM flags f LEFT JOIN dob USING (person_key)
GROUP BY f.person_key;
