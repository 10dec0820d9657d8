-- marts.referral_sources_monthly: where referrals come from, by service and month.
--
-- Grain: one row per (month_start, service, source_group) with at least one referral
-- (a source with none that month has no row).
--
-- Reads: model.fact_mash_contact (received_at, source_group), model.fact_eh_referral
-- (referral_date, source_group), model.fact_csc_referral (referral_date, source_group).
--
-- Measures:
--   service       'mash' (a contact: one child in one contact, month of received_at in
--                 Europe/London), 'early_help' (a REFERRAL_ID, accepted or not, month of
--                 referral_date), 'social_care' (a Mosaic referral, month of referral_date).
--   source_group  the model's harmonised source group; NULL -> 'unknown'.
--   referrals     referrals (contacts for the MASH) from that source group that month.
--   share         referrals / all referrals of the service that month (the shares of a
--                 service's month add up to 1).

CREATE OR REPLACE TABLE marts.referral_sources_monthly AS
WITH referral AS (
    SELECT CAST(date_trunc('month', timezone('Europe/London', received_at)) AS DATE) AS month_start,
           'mash' AS service, source_group
    FROM model.fact_mash_contact WHERE received_at IS NOT NULL
    UNION ALL
    SELECT CAST(date_trunc('month', referral_date) AS DATE), 'early_help', source_group
    FROM model.fact_eh_referral WHERE referral_date IS NOT NULL
    UNION ALL
    SELECT CAST(date_trunc('month', referral_date) AS DATE), 'social_care', source_group
    FROM model.fact_csc_referral WHERE referral_date IS NOT NULL
),
counted AS (
    SELECT month_start, service, coalesce(source_group, 'unknown') AS source_group, count(*) AS referrals
    FROM referral
    GROUP BY ALL
)
SELECT month_start, service, source_group, referrals,
       referrals / sum(referrals) OVER (PARTITION BY month_start, service) AS share
FROM counted
ORDER BY month_start, service, source_group;
