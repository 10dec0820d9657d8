-- identity.review_queue: pairs a person should look at, one row per pair (grain:
-- record_l, record_r), both records side by side with the evidence:
--   grey zone   a match probability between the grey floor and the threshold, and the
--               records ended in different persons;
--   refused     evidence of a match the engine would not act on: a shared identifier
--               contradicted by birth date or sex, the twin guard, or two clusters with
--               different NHS numbers or UPNs.
-- A pair a reviewer has already decided is not queued again; the decision is applied
-- as a hard constraint by link.py. Needs the variable run_id.
-- ${scope} limits the rebuild to pairs with a record an incremental run clustered again
-- (no other pair's status, persons or values can have changed), written to ${target}.
CREATE OR REPLACE TABLE ${target} AS
SELECT md5(k.record_l || '|' || k.record_r) AS pair_id,
       k.record_l, k.record_r,
       CASE k.status WHEN 'grey zone' THEN 'grey zone' ELSE 'refused: ' || k.reason END AS why,
       k.match_probability, k.explanation,
       pl.person_key AS person_key_l, pr.person_key AS person_key_r,
       l.system AS system_l, r.system AS system_r,
       l.forename AS forename_l, r.forename AS forename_r,
       l.middle_names AS middle_names_l, r.middle_names AS middle_names_r,
       l.surname AS surname_l, r.surname AS surname_r,
       coalesce(l.dob, l.dob_approximate) AS dob_l, coalesce(r.dob, r.dob_approximate) AS dob_r,
       l.sex AS sex_l, r.sex AS sex_r,
       l.postcode AS postcode_l, r.postcode AS postcode_r,
       l.nhs_number AS nhs_number_l, r.nhs_number AS nhs_number_r,
       l.upn AS upn_l, r.upn AS upn_r,
       getvariable('run_id') AS queued_run
FROM (  -- the pairs first: left to the optimiser, the scope filtered only after the joins
    SELECT * FROM identity.link k WHERE k.status IN ('grey zone', 'refused') AND (${scope})
) k
JOIN identity.person_record pl ON pl.record_key = k.record_l
JOIN identity.person_record pr ON pr.record_key = k.record_r
JOIN identity.standardised_record l ON l.record_key = k.record_l
JOIN identity.standardised_record r ON r.record_key = k.record_r
WHERE pl.person_key <> pr.person_key
  AND NOT EXISTS (SELECT 1 FROM identity.current_review_decision d
                  WHERE d.record_l = k.record_l AND d.record_r = k.record_r)
ORDER BY k.match_probability DESC;
