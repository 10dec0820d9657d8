-- Families, step 3 of 5: co-residence, and the guard against chaining.
--
-- Input: fam_comp1 (person_key, comp): the components of the linking relationship
-- evidence alone (every person of identity.person_record, alone when nothing links them).
--
-- fam_cores (temporary): pairs of people living at the same address_key in one occupancy
-- spell with overlapping periods (strictly: one moving out the day the other moves in is
-- not co-residence). Grain: one row per ordered pair and shared period. Spells marked
-- is_crowded (more than ${household_cap} people, e.g. a block of flats without flat
-- numbers) give no pairs. A bare "Flat 4" matched at its postcode (address_basis 'flat
-- matched at postcode') is too weak on its own: it gives a pair only with someone the
-- person has a recorded relationship with (so a father's FTH link plus his "Flat 4"
-- address puts him with his child; a bare "Flat 4" alone does not).
--
-- The rule, so that address reuse or a block of flats cannot chain unrelated families:
--   * co-residence never merges two people who each already have relatives (two
--     components of two or more people stay apart, whatever address they share);
--   * a person with no linking relationship joins the one family they shared an address
--     with for longest (total overlapping days, an open period counting to 9999-12-31);
--   * people with no linking relationship who lived only with each other form a family;
--   * a family above ${family_cap} members after this step falls back to its relationship
--     components, and one above ${family_cap} from relationships alone is flagged.
-- fam_co_group (temporary): the extra memberships this adds, as (person_key, group_id).

CREATE OR REPLACE TEMP TABLE fam_cores AS
WITH res AS (
    SELECT r.*, r.address_basis = 'flat matched at postcode' AS weak
    FROM fam_res_spell r JOIN fam_spell s USING (address_key, spell_no)
    WHERE NOT s.is_crowded
),
pairs AS (  -- the test for a recorded relationship runs only on pairs with a weak address
    SELECT a.person_key AS p, b.person_key AS q, a.address_key, a.weak OR b.weak AS weak,
           greatest(a.valid_from, b.valid_from) AS valid_from,
           CASE WHEN a.valid_to IS NULL THEN b.valid_to WHEN b.valid_to IS NULL THEN a.valid_to
                ELSE least(a.valid_to, b.valid_to) END AS valid_to,
           greatest(a.known_from, b.known_from) AS known_from  -- known once both residences were
    FROM res a
    JOIN res b ON b.address_key = a.address_key AND b.spell_no = a.spell_no AND b.person_key <> a.person_key
     AND a.valid_from < coalesce(b.valid_to, fam_inf()) AND b.valid_from < coalesce(a.valid_to, fam_inf())
)
SELECT p, q, address_key, valid_from, valid_to, known_from FROM pairs WHERE NOT weak
UNION ALL
SELECT p, q, address_key, valid_from, valid_to, known_from FROM pairs
WHERE weak AND EXISTS (SELECT 1 FROM fam_evidence ea JOIN fam_evidence eb USING (group_id)
                       WHERE ea.person_key = pairs.p AND eb.person_key = pairs.q);
