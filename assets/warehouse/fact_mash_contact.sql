-- model.fact_mash_contact: one row per child per MASH contact, as the newest version the
-- delta feed sent (latest updated_at), so triage progress (rating, decision) is final-so-far.
-- Grain: (contact_id, child_seq).
--   received_at, rated_at, decided_at   TIMESTAMPTZ instants (decided_at = decision_at)
--   received_date       the day received, on the Europe/London clock
--   hours_to_decision   elapsed hours from received_at to decided_at (epoch difference /
--                       3600, so a contact spanning a clock change counts real hours)
--   decided_within_24h  hours_to_decision <= 24; NULL while undecided
--   red_decided_within_4h  hours_to_decision <= 4 for rag 'R'; NULL unless red and decided
--   source_group        referrer_source_code harmonised (model.ref_referral_source, 'cin')
--   district            of the contact's postcode, else of the child's (model.dim_person)
--   family_key          the child's family on received_date, else their current family
CREATE OR REPLACE TABLE model.fact_mash_contact AS
WITH contact AS (
    SELECT * FROM history.mash__contacts
    QUALIFY row_number() OVER (PARTITION BY contact_id, child_seq ORDER BY updated_at DESC, valid_from DESC) = 1
),
timed AS (
    SELECT c.*, rp.person_key,
           (c.received_at AT TIME ZONE 'Europe/London')::DATE AS received_date,
           (epoch(c.decision_at) - epoch(c.received_at)) / 3600.0 AS hours_to_decision
    FROM contact c
    LEFT JOIN _record_person rp
        ON rp.system = 'mash' AND rp.table_name = 'contacts' AND rp.record_id = c.contact_id || ':' || c.child_seq
)
SELECT t.contact_id,
       t.child_seq,
       t.person_key,
       family_on(t.person_key, t.received_date) AS family_key,
       coalesce(pc.district, p.district) AS district,
       t.received_at,
       t.received_date,
       t.rated_at,
       t.decision_at AS decided_at,
       t.rag,
       t.decision,
       t.referrer_source_code,
       coalesce(rs.source_group, 'unknown') AS source_group,
       t.hours_to_decision,
       t.hours_to_decision <= 24 AS decided_within_24h,
       CASE WHEN t.rag = 'R' THEN t.hours_to_decision <= 4 END AS red_decided_within_4h,
       t.channel,
       t.referrer_org,
       CASE WHEN t.concerns IS NOT NULL THEN string_split(t.concerns, ';') END AS concerns,
       t.triage_worker_id,
       t.csc_person_id,
       t.updated_at
FROM timed t
LEFT JOIN _postcode pc ON pc.postcode = t.postcode
LEFT JOIN model.dim_person p ON p.person_key = t.person_key
LEFT JOIN model.ref_referral_source rs ON rs.scheme = 'cin' AND rs.code = t.referrer_source_code
ORDER BY t.contact_id, t.child_seq;
