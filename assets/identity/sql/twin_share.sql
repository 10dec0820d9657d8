-- identity.twin_share: how often, in this data, two records born the same day under one
-- surname at one address, with forenames more than a slip apart (and no identifier
-- agreeing), are children the records show to be twins (identity.twin_birth: different
-- NHS numbers or UPNs, or two names each recorded twice). One row, rebuilt by full runs.
-- Where twins are common (children's services: about 3 in 100 children are twins) such a
-- pair without the records to tell may still be two children, and the twin guard holds
-- it back; where the data shows almost none (a register of adults), a different forename
-- is an error like any other and the model weighs it.
CREATE OR REPLACE TABLE identity.twin_share AS
WITH same_birth_household AS (
    SELECT l.dob, l.surname, l.postcode
    FROM identity.standardised_record l
    JOIN identity.standardised_record r
      ON l.dob = r.dob AND l.surname = r.surname AND l.postcode = r.postcode AND l.record_key < r.record_key
    WHERE jaro_winkler_similarity(l.forename, r.forename) < 0.92
      AND NOT list_has_any(l.forename_group, r.forename_group)
      AND NOT coalesce(l.nhs_number = r.nhs_number OR l.upn = r.upn, false)
)
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM identity.twin_birth t
           WHERE t.dob = p.dob AND ((t.key_kind = 'surname' AND t.key_value = p.surname)
                                 OR (t.key_kind = 'postcode' AND t.key_value = p.postcode)))) AS shown_twins,
       coalesce(shown_twins / nullif(pairs, 0), 0.0) AS share
FROM same_birth_household p;
