-- marts.mash_timeliness_monthly: does the MASH front door decide in time, and what does it
-- decide, month by month.
--
-- Grain: one row per month_start, for every month of the data (_mart_month); a month is the
-- Europe/London calendar month of received_at (a contact received at 00:30 BST on 1 October,
-- 23:30 UTC on 30 September, belongs to October).
--
-- Reads: model.fact_mash_contact (received_at, decided_at, rag, decision),
-- _mart_month and _mart_range (_calendar.sql).
--
-- Counting unit: a contact is one row of fact_mash_contact, one child in one contact
-- (a contact about three siblings counts three), as the MASH reports it.
-- Measures:
--   hours to decision     (epoch(decided_at) - epoch(received_at)) / 3600: elapsed time
--                         between two instants, so the October and March clock changes do not
--                         distort it (received 2025-10-25 23:30 BST, decided 2025-10-26 22:45
--                         GMT is 24.25 hours, not the 23.25 the wall clock shows).
--   contacts              contacts received in the month.
--   decided               of those, with a decision (decided_at IS NOT NULL).
--   decided_within_24h    of those, hours to decision <= 24 (24 hours exactly is in time).
--   share_within_24h      decided_within_24h / contacts (NULL when no contacts): a contact
--                         decided late or not decided yet counts against the target, so the
--                         latest, partial month is provisional; use a complete month.
--   red_contacts          contacts received in the month with rag = 'R'.
--   red_decided_within_4h of those, decided with hours to decision <= 4.
--   share_red_within_4h   red_decided_within_4h / red_contacts (NULL when no red contact).
--   share_csc_assessment, share_targeted_eh, share_other_service, share_iag
--                         the outcome split: contacts with decision CSC_ASSESSMENT /
--                         TARGETED_EH / OTHER_SERVICE / IAG over decided (NULL when none).
--   month_complete        (added) the data runs past the month's end
--                         (month_end < the last day of data); "last month" in the analyst
--                         queries is the latest complete month.

CREATE OR REPLACE TABLE marts.mash_timeliness_monthly AS
WITH contact AS (
    SELECT CAST(date_trunc('month', timezone('Europe/London', received_at)) AS DATE) AS month_start,
           rag, decision, decided_at IS NOT NULL AS decided,
           (epoch(decided_at) - epoch(received_at)) / 3600.0 AS hours_to_decision
    FROM model.fact_mash_contact
    WHERE received_at IS NOT NULL
),
counted AS (
    SELECT m.month_start, m.month_end,
           count(c.month_start) AS contacts,
           count(*) FILTER (WHERE c.decided) AS decided,
           count(*) FILTER (WHERE c.hours_to_decision <= 24) AS decided_within_24h,
           count(*) FILTER (WHERE c.rag = 'R') AS red_contacts,
           count(*) FILTER (WHERE c.rag = 'R' AND c.hours_to_decision <= 4) AS red_decided_within_4h,
           count(*) FILTER (WHERE c.decided AND c.decision = 'CSC_ASSESSMENT') AS csc_assessment,
           count(*) FILTER (WHERE c.decided AND c.decision = 'TARGETED_EH') AS targeted_eh,
           count(*) FILTER (WHERE c.decided AND c.decision = 'OTHER_SERVICE') AS other_service,
           count(*) FILTER (WHERE c.decided AND c.decision = 'IAG') AS iag
    FROM _mart_month AS m
    LEFT JOIN contact AS c USING (month_start)
    GROUP BY m.month_start, m.month_end
)
SELECT month_start, contacts, decided, decided_within_24h,
       decided_within_24h / nullif(contacts, 0) AS share_within_24h,
       red_contacts, red_decided_within_4h,
       red_decided_within_4h / nullif(red_contacts, 0) AS share_red_within_4h,
       csc_assessment / nullif(decided, 0) AS share_csc_assessment,
       targeted_eh / nullif(decided, 0) AS share_targeted_eh,
       other_service / nullif(decided, 0) AS share_other_service,
       iag / nullif(decided, 0) AS share_iag,
       month_end < (SELECT data_end FROM _mart_range) AS month_complete
FROM counted
ORDER BY month_start;
