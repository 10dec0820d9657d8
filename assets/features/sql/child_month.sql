-- features.child_month: what the warehouse knew about each child at each month-end.
-- Grain: (person_key, as_of). One row for every child known to any system by as_of and
-- aged 0-17 on it (features.child_population, child_values.sql, defines who and since when;
-- a child without an address has NULL district and deprivation).
-- Every value uses only records known at as_of (known.sql): nothing delivered later, no
-- event claimed later, no end, rating or decision dated later. "12m" means the twelve
-- months ending on as_of.
--   person_key                     the child (identity.person)
--   family_key                     the child's family on as_of (identity.family_member)
--   as_of                          the month-end the row describes
--   age_years                      completed years on as_of
--   age_band                       0-4, 5-10, 11-15 or 16-17
--   sex                            M, F or U (identity.person)
--   ethnicity_group                harmonised ethnicity group as held at as_of: each record's newest
--                                  version delivered by then, ranked as model.dim_person ranks them
--   district                       district team of the residence held on as_of (NULL if none known)
--   imd_decile                     deprivation decile (1 most deprived) of the postcode of the
--                                  residence held on as_of
--   attendance_rate_2_terms        1 - sessions missed / possible over the two latest terms whose
--                                  attendance had arrived (the census after each term); NULL
--                                  when the child had none
--   persistent_absence             10% or more of sessions missed over the two latest terms known
--   severe_absence                 50% or more of sessions missed over the two latest terms known
--   suspensions_12m                suspensions starting in the 12 months ending on as_of
--   permanently_excluded           a permanent exclusion on or before as_of
--   home_educated                  on the elective home education register on as_of
--   missing_education              identified as missing education and not yet resolved on as_of
--   sen_provision                  N none, K SEN support, E EHC plan, from the newest census
--                                  delivered by as_of (it carries no date of its own: NULL before
--                                  its first delivery)
--   free_school_meals              a free school meals period open on as_of
--   mash_contacts_12m              MASH contacts about the child received in the 12 months ending
--                                  on as_of
--   mash_red_12m                   MASH contacts in the 12 months ending on as_of, rated red on or
--                                  before as_of
--   prior_eh_episodes              early help episodes of the child's early help family begun by as_of
--   open_to_early_help             an early help episode of the child's family not yet ended on as_of
--   prior_cin_plans                child in need plans begun by as_of
--   prior_cp_plans                 child protection plans begun by as_of
--   prior_cla_episodes             looked-after episodes begun by as_of
--   open_to_social_care            a referral not yet closed, or a CIN plan, CP plan or CLA episode
--                                  not yet ended, on as_of
--   csc_referrals_12m              social care referrals in the 12 months ending on as_of
--   re_referral_12m                a social care referral in the 12 months ending on as_of, made
--                                  within 12 months of the child's previous referral
--   factor_domestic_abuse          assessment factor 3A/3B/3C on a MASH contact or an authorised
--                                  social care assessment in the 24 months ending on as_of
--   factor_parental_mental_health  assessment factor 4B on a MASH contact or an authorised social care
--                                  assessment in the 24 months ending on as_of
--   factor_substance_misuse        assessment factors 1A-1C or 2A-2C on a MASH contact or an authorised
--                                  social care assessment in the 24 months ending on as_of
--   factor_exploitation            assessment factors 11A, 12A, 13A or 24A on a MASH contact or an
--                                  authorised social care assessment in the 24 months ending on as_of
--   missed_health_reviews_12m      health-visiting or school nursing contacts not attended, in the
--                                  12 months ending on as_of
--   camhs_referrals_12m            CAMHS referrals received in the 12 months ending on as_of
--   sibling_cp_or_cla              another child of the family with a CP plan or CLA episode open on as_of
--   family_size                    people in the family on as_of (1 when no family is known)
--   moves_12m                      residences begun in the 12 months ending on as_of, after the
--                                  child's first one
--   family_sf_needs                Supporting Families headline needs of the family on as_of
--                                  (features.family_month); a child in no known family is a
--                                  family of one, with their own needs
--   resident_at_as_of              a residence in the area is known to cover as_of
--   in_model_population            resident and not open to social care: the children a prompt
--                                  to look could help
CREATE OR REPLACE TABLE features.child_month AS
SELECT c.person_key, c.family_key, c.as_of, c.age_years, c.age_band, c.sex, c.ethnicity_group,
       c.district, c.imd_decile, c.attendance_rate_2_terms, c.persistent_absence, c.severe_absence,
       c.suspensions_12m, c.permanently_excluded, c.home_educated, c.missing_education,
       c.sen_provision, c.free_school_meals, c.mash_contacts_12m, c.mash_red_12m,
       c.prior_eh_episodes, c.open_to_early_help, c.prior_cin_plans, c.prior_cp_plans,
       c.prior_cla_episodes, c.open_to_social_care, c.csc_referrals_12m, c.re_referral_12m,
       c.factor_domestic_abuse, c.factor_parental_mental_health, c.factor_substance_misuse,
       c.factor_exploitation, c.missed_health_reviews_12m, c.camhs_referrals_12m,
       coalesce(fm.children_on_cp_or_cla - CASE WHEN c.open_cp_or_cla THEN 1 ELSE 0 END, 0) > 0 AS sibling_cp_or_cla,
       coalesce(fm.members, 1) AS family_size,
       c.moves_12m,
       coalesce(u.needs_count, 0) AS family_sf_needs,
       c.resident_at_as_of,
       c.resident_at_as_of AND NOT c.open_to_social_care AS in_model_population
FROM _feat_child_month c
LEFT JOIN features.family_month fm USING (as_of, family_key)
LEFT JOIN _feat_unit_needs u ON u.as_of = c.as_of AND u.unit = coalesce(c.family_key, '~' || c.person_key)
ORDER BY c.person_key, c.as_of;
