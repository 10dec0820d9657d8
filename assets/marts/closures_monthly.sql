-- marts.closures_monthly: how many cases close each month, and why.
--
-- Grain: one row per (month_start, service, reason) with at least one closure.
--
-- Reads: model.fact_eh_episode (end_date, end_reason), model.fact_csc_referral
-- (close_date, close_reason).
--
-- Measures:
--   service   'early_help': an early help episode (a family's piece of work) closing, month
--               of end_date, reason = END_REASON (OUTCOMES_MET, DISENGAGED, MOVED_AWAY,
--               STEP_UP, UNIVERSAL, CONSENT_WITHDRAWN);
--             'social_care': a Mosaic referral (the child's case) closing, month of
--               close_date, reason = the CIN closure code (RC1..RC9; RC8 is no further action
--               after assessment, RC9 referred to early help).
--   reason    NULL -> 'UNKNOWN'.
--   closures  episodes / referrals closed.

CREATE OR REPLACE TABLE marts.closures_monthly AS
WITH closure AS (
    SELECT CAST(date_trunc('month', end_date) AS DATE) AS month_start, 'early_help' AS service,
           coalesce(end_reason, 'UNKNOWN') AS reason
    FROM model.fact_eh_episode WHERE end_date IS NOT NULL
    UNION ALL
    SELECT CAST(date_trunc('month', close_date) AS DATE), 'social_care', coalesce(close_reason, 'UNKNOWN')
    FROM model.fact_csc_referral WHERE close_date IS NOT NULL
)
SELECT month_start, service, reason, count(*) AS closures
FROM closure
GROUP BY ALL
ORDER BY month_start, service, reason;
