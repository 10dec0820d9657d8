-- marts.re_referrals_monthly: how many referrals come back within a year of an earlier one.
--
-- Grain: one row per (month_start, service) for every month of the data (_mart_month) and
-- the services 'early_help' and 'social_care' (zero when none).
--
-- Reads: model.fact_eh_referral (referral_id, family_id, family_key, referral_date),
-- model.fact_csc_referral (referral_id, person_key, referral_date), _mart_month.
--
-- Measures:
--   who       social_care: the child (person_key), as in the DfE children in need census;
--             early_help: the family (family_key, else 'early_help:' || family_id), since
--             early help referrals are family referrals (a family re-registered under a new
--             FAMILY_ID is still the same family_key).
--   referrals referrals made in the month (month of referral_date; every referral,
--             accepted / NFA or not).
--   re_referrals_within_12_months  of those, referrals whose child (family) had an earlier
--             referral to the same service dated on or after referral_date - 12 months and
--             strictly before referral_date (one exactly 12 months earlier counts; one 13
--             months earlier does not; a second referral on the same day is not a
--             re-referral). A social care referral with no person_key is never a
--             re-referral. Earlier referrals before the data starts are not seen, so the
--             first 12 months of data undercount.
--   share     re_referrals_within_12_months / referrals (NULL when no referral).

CREATE OR REPLACE TABLE marts.re_referrals_monthly AS
WITH referral AS (
    SELECT 'early_help' AS service, coalesce(family_key, 'early_help:' || family_id) AS who, referral_date
    FROM model.fact_eh_referral WHERE referral_date IS NOT NULL
    UNION ALL
    SELECT 'social_care', person_key, referral_date
    FROM model.fact_csc_referral WHERE referral_date IS NOT NULL
),
previous AS (
    SELECT service, who, referral_date,
           CASE WHEN who IS NOT NULL THEN max(referral_date) OVER (
               PARTITION BY service, who ORDER BY referral_date
               RANGE BETWEEN UNBOUNDED PRECEDING AND INTERVAL 1 DAY PRECEDING) END AS previous_date
    FROM referral
),
counted AS (
    SELECT CAST(date_trunc('month', referral_date) AS DATE) AS month_start, service,
           count(*) AS referrals,
           count(*) FILTER (WHERE previous_date >= referral_date - INTERVAL 12 MONTH) AS re_referrals
    FROM previous
    GROUP BY ALL
)
SELECT m.month_start, s.service,
       coalesce(c.referrals, 0) AS referrals,
       coalesce(c.re_referrals, 0) AS re_referrals_within_12_months,
       c.re_referrals / nullif(c.referrals, 0) AS share
FROM _mart_month AS m
CROSS JOIN (VALUES ('early_help'), ('social_care')) AS s(service)
LEFT JOIN counted AS c ON c.month_start = m.month_start AND c.service = s.service
ORDER BY m.month_start, s.service;
