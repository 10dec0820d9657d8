-- marts.demand_by_district: demand on the MASH, early help and social care, by district
-- and month, per 10,000 children living there.
--
-- Grain: one row per (month_start, district) for every month of the data (_mart_month) and
-- every district of model.dim_district, plus 'UNKNOWN' when some demand has no district.
--
-- Reads: model.dim_district (district, children), model.dim_person (person_key, district),
-- model.dim_family (family_key, district), model.fact_mash_contact (received_at, district,
-- person_key), model.fact_eh_referral (referral_date, person_key, family_key),
-- model.fact_csc_referral (referral_date, person_key), _mart_month (_calendar.sql).
--
-- Measures:
--   children        dim_district.children: children (is_child) living in the district now;
--                   the same denominator every month; NULL for 'UNKNOWN'.
--   mash_contacts   contacts (one child in one contact) received in the month (Europe/London
--                   month of received_at); district = the contact's district, else the
--                   child's (dim_person).
--   eh_referrals    early help referrals (accepted or not), month of referral_date;
--                   district = the referred child's (dim_person), else the family's
--                   (dim_family).
--   csc_referrals   social care referrals, month of referral_date; district = the child's
--                   (dim_person).
--   *_per_10k       count * 10000 / children (NULL when children is NULL or 0).

CREATE OR REPLACE TABLE marts.demand_by_district AS
WITH demand AS (
    SELECT CAST(date_trunc('month', timezone('Europe/London', c.received_at)) AS DATE) AS month_start,
           coalesce(c.district, p.district, 'UNKNOWN') AS district, 'mash' AS kind
    FROM model.fact_mash_contact AS c
    LEFT JOIN model.dim_person AS p ON p.person_key = c.person_key
    WHERE c.received_at IS NOT NULL
    UNION ALL
    SELECT CAST(date_trunc('month', r.referral_date) AS DATE),
           coalesce(p.district, f.district, 'UNKNOWN'), 'early_help'
    FROM model.fact_eh_referral AS r
    LEFT JOIN model.dim_person AS p ON p.person_key = r.person_key
    LEFT JOIN model.dim_family AS f ON f.family_key = r.family_key
    WHERE r.referral_date IS NOT NULL
    UNION ALL
    SELECT CAST(date_trunc('month', r.referral_date) AS DATE), coalesce(p.district, 'UNKNOWN'), 'social_care'
    FROM model.fact_csc_referral AS r
    LEFT JOIN model.dim_person AS p ON p.person_key = r.person_key
    WHERE r.referral_date IS NOT NULL
),
counted AS (
    SELECT month_start, district,
           count(*) FILTER (WHERE kind = 'mash') AS mash_contacts,
           count(*) FILTER (WHERE kind = 'early_help') AS eh_referrals,
           count(*) FILTER (WHERE kind = 'social_care') AS csc_referrals
    FROM demand
    GROUP BY ALL
),
district AS (
    SELECT district, children FROM model.dim_district
    UNION ALL
    SELECT DISTINCT district, NULL FROM demand
    WHERE district NOT IN (SELECT district FROM model.dim_district WHERE district IS NOT NULL)
),
grid AS (
    SELECT m.month_start, d.district, d.children
    FROM _mart_month AS m CROSS JOIN district AS d
)
SELECT g.month_start, g.district, g.children,
       coalesce(c.mash_contacts, 0) AS mash_contacts,
       coalesce(c.eh_referrals, 0) AS eh_referrals,
       coalesce(c.csc_referrals, 0) AS csc_referrals,
       coalesce(c.mash_contacts, 0) * 10000.0 / nullif(g.children, 0) AS mash_contacts_per_10k,
       coalesce(c.eh_referrals, 0) * 10000.0 / nullif(g.children, 0) AS eh_referrals_per_10k,
       coalesce(c.csc_referrals, 0) * 10000.0 / nullif(g.children, 0) AS csc_referrals_per_10k
FROM grid AS g
LEFT JOIN counted AS c USING (month_start, district)
ORDER BY g.month_start, g.district;
