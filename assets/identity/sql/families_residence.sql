-- Families, step 1 of 5: residences and households.
--
-- fam_residence (temporary): where each person lived. Grain: one row per person, source
-- record and normalised address, with the period the source gives for it:
--   Mosaic ssd_address      addr_address_start_date .. addr_address_end_date
--   FHIR Patient address    period.start .. period.end
--   early help FAMILIES     the family's address version, cut to the member's FROM_DATE ..
--                           TO_DATE (the first address version seen is taken to hold from
--                           the member's FROM_DATE, as snapshots only start at go-live)
--   education pupils,       snapshot sources without dates: history valid_from .. valid_to
--   health RelatedPerson    (the adult's address on the mother/carer link)
-- Where a source gives no end, the record's deletion from the snapshots ends it (history
-- valid_to of the last version). known_from is the drop that first delivered the residence
-- and end_known_from the drop from which its end was known (fam_end_known), so that the
-- features can ask where a person was known to live at a past date. Successive history
-- versions of the same address and start are one residence: the latest version's end wins. The MASH's typed address is not used
-- (a referrer's one-off note, not a residence with a period).
--
-- Normalised address (address_key): the UPRN where the source gives one; else a UPRN
-- looked up from another source that gave the same postcode + address line with exactly
-- one UPRN; else canonical postcode + normalised first line ("flat 5" lines take the next
-- line with them). A bare "Flat 5" with no street (RelatedPerson addresses) is matched to
-- the one complete address at its postcode starting "flat 5", and dropped when there is
-- none or several. A line without a street word or a postcode that is missing or a
-- placeholder gives no address.
--
-- identity.household: a household is an address in one occupancy spell: residences at the
-- same address_key whose periods overlap (strictly: a move-out on the day of a move-in is
-- two households). So a house reused by a new family after the old one left is a new
-- household. Grain: one row per household_key and person_key (the person's first and last
-- date there). household_key is kept across runs by identity.household_registry (same
-- address, overlapping spell). is_crowded marks a spell with more than
-- ${household_cap} distinct people: co-residence there is not used to build families.

CREATE OR REPLACE TEMP MACRO fam_pc(p) AS (
    CASE WHEN regexp_full_match(upper(regexp_replace(coalesce(p, ''), '[^A-Za-z0-9]', '', 'g')),
                                '[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}')
          AND upper(regexp_replace(p, '[^A-Za-z0-9]', '', 'g')) NOT IN ('ZZ993VZ', 'ZZ993CZ', 'ZZ993WZ')
         THEN left(upper(regexp_replace(p, '[^A-Za-z0-9]', '', 'g')), -3) || ' '
              || right(upper(regexp_replace(p, '[^A-Za-z0-9]', '', 'g')), 3) END);

CREATE OR REPLACE TEMP MACRO fam_text(t) AS (
    trim(regexp_replace(
      regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
        ' ' || regexp_replace(lower(strip_accents(coalesce(t, ''))), '[^a-z0-9]+', ' ', 'g') || ' ',
        ' (street) ', ' st ', 'g'), ' (road) ', ' rd ', 'g'), ' (avenue) ', ' ave ', 'g'),
        ' (lane) ', ' ln ', 'g'), ' (drive) ', ' dr ', 'g'), ' (apartment|apt) ', ' flat ', 'g'),
      ' +', ' ', 'g')));

CREATE OR REPLACE TEMP MACRO fam_sub_building(t) AS regexp_full_match(t, '(flat|unit|room|floor|maisonette)( [a-z0-9]+)?');

CREATE OR REPLACE TEMP MACRO fam_line(l1, l2) AS (
    CASE WHEN fam_sub_building(fam_text(l1)) THEN trim(fam_text(l1) || ' ' || fam_text(l2))
         WHEN fam_text(l1) = '' THEN fam_text(l2)
         ELSE fam_text(l1) END);

CREATE OR REPLACE TEMP MACRO fam_uprn(u) AS nullif(regexp_replace(coalesce(CAST(u AS VARCHAR), ''), '[^0-9]', '', 'g'), '');

CREATE OR REPLACE TEMP MACRO fam_inf() AS DATE '9999-12-31';

-- When a residence's end became known: the first delivery carrying the end the source
-- claims, or, with no claimed end, the drop that no longer carried the record (its
-- history valid_to, which is the end itself). NULL while the residence is open.
CREATE OR REPLACE TEMP MACRO fam_end_known(claimed_end, first_with_claimed_end, last_valid_to) AS (
    CASE WHEN claimed_end IS NOT NULL THEN first_with_claimed_end ELSE last_valid_to END);

CREATE OR REPLACE TEMP TABLE fam_address_raw AS
WITH pr AS (SELECT person_key, system, table_name, record_id FROM fam_src_person_record),
eh_addr AS (  -- family address versions; the first seen holds from the member's own start
    SELECT FAMILY_ID, UPRN, POSTCODE, ADDRESS_1, ADDRESS_2,
           CASE WHEN min(valid_from) = min(min(valid_from)) OVER (PARTITION BY FAMILY_ID) THEN NULL
                ELSE min(valid_from) END AS addr_from,
           max_by({'to': valid_to}, valid_from)['to'] AS addr_to,
           min(valid_from) AS addr_known
    FROM fam_src_eh_families
    GROUP BY FAMILY_ID, UPRN, POSTCODE, ADDRESS_1, ADDRESS_2
),
eh_member AS (
    SELECT FAMILY_ID, PERSON_ID, coalesce(FROM_DATE, min(valid_from)) AS m_from,
           max_by({'to': coalesce(TO_DATE, valid_to)}, valid_from)['to'] AS m_to,
           min(valid_from) AS m_known, fam_end_known(max_by({'to': TO_DATE}, valid_from)['to'],
                                                     min(valid_from) FILTER (WHERE TO_DATE IS NOT NULL),
                                                     max_by({'to': valid_to}, valid_from)['to']) AS m_end_known
    FROM fam_src_eh_family_members GROUP BY FAMILY_ID, PERSON_ID, FROM_DATE
),
rows AS (
    SELECT pr.person_key, 'social_care ssd_address' AS source, fam_uprn(a.addr_address_json->>'UPRN') AS uprn,
           a.addr_address_postcode AS pc_raw,
           concat_ws(' ', nullif(a.addr_address_json->>'FLAT', ''), a.addr_address_json->>'HOUSE',
                     a.addr_address_json->>'STREET') AS l1, CAST(NULL AS VARCHAR) AS l2,
           coalesce(a.addr_address_start_date, min(a.valid_from)) AS valid_from,
           max_by({'to': coalesce(a.addr_address_end_date, a.valid_to)}, a.valid_from)['to'] AS valid_to,
           min(a.valid_from) AS known_from,
           fam_end_known(max_by({'to': a.addr_address_end_date}, a.valid_from)['to'],
                         min(a.valid_from) FILTER (WHERE a.addr_address_end_date IS NOT NULL),
                         max_by({'to': a.valid_to}, a.valid_from)['to']) AS end_known_from
    FROM fam_src_sc_address a
    JOIN pr ON pr.system = 'social_care' AND pr.table_name = 'ssd_person' AND pr.record_id = a.addr_person_id
    GROUP BY pr.person_key, a.addr_table_id, CAST(a.addr_address_json AS VARCHAR), a.addr_address_json->>'UPRN',
             a.addr_address_json->>'FLAT', a.addr_address_json->>'HOUSE', a.addr_address_json->>'STREET',
             a.addr_address_postcode, a.addr_address_start_date
    UNION ALL
    SELECT pr.person_key, 'health Patient address', NULL, a.postcode, a.line1, a.line2,
           coalesce(a.period_start, min(a.valid_from)),
           max_by({'to': coalesce(a.period_end, a.valid_to)}, a.valid_from)['to'],
           min(a.valid_from), fam_end_known(max_by({'to': a.period_end}, a.valid_from)['to'],
                                            min(a.valid_from) FILTER (WHERE a.period_end IS NOT NULL),
                                            max_by({'to': a.valid_to}, a.valid_from)['to'])
    FROM fam_src_hl_patient_addresses a
    JOIN pr ON pr.system = 'health' AND pr.table_name = 'Patient' AND pr.record_id = a.patient_id
    GROUP BY pr.person_key, a.patient_id, a.address_index, a.line1, a.line2, a.postcode, a.period_start
    UNION ALL
    SELECT pr.person_key, 'health RelatedPerson address', NULL, r.postcode, r.line1, NULL,
           min(r.valid_from), max_by({'to': r.valid_to}, r.valid_from)['to'],
           min(r.valid_from), max_by({'to': r.valid_to}, r.valid_from)['to']
    FROM fam_src_hl_related_persons r
    JOIN pr ON pr.system = 'health' AND pr.table_name = 'RelatedPerson' AND pr.record_id = r.related_person_id
    GROUP BY pr.person_key, r.related_person_id, r.line1, r.postcode
    UNION ALL
    SELECT pr.person_key, 'education pupils', fam_uprn(p.UPRN), p.Postcode, p.AddressLine1, p.AddressLine2,
           min(p.valid_from), max_by({'to': p.valid_to}, p.valid_from)['to'],
           min(p.valid_from), max_by({'to': p.valid_to}, p.valid_from)['to']
    FROM fam_src_ed_pupils p
    JOIN pr ON pr.system = 'education' AND pr.table_name = 'pupils' AND pr.record_id = p.ONEPupilID
    GROUP BY pr.person_key, p.ONEPupilID, p.UPRN, p.Postcode, p.AddressLine1, p.AddressLine2
    UNION ALL
    SELECT pr.person_key, 'early_help FAMILIES', fam_uprn(f.UPRN), f.POSTCODE, f.ADDRESS_1, f.ADDRESS_2,
           greatest(m.m_from, coalesce(f.addr_from, m.m_from)),
           CASE WHEN m.m_to IS NULL THEN f.addr_to WHEN f.addr_to IS NULL THEN m.m_to ELSE least(m.m_to, f.addr_to) END,
           greatest(m.m_known, f.addr_known),
           CASE WHEN m.m_to IS NULL THEN f.addr_to WHEN f.addr_to IS NULL THEN m.m_end_known
                WHEN m.m_to <= f.addr_to THEN m.m_end_known ELSE f.addr_to END
    FROM eh_member m JOIN eh_addr f USING (FAMILY_ID)
    JOIN pr ON pr.system = 'early_help' AND pr.table_name = 'FAMILY_MEMBERS' AND pr.record_id = m.PERSON_ID
),
kept AS (SELECT * FROM rows WHERE valid_from IS NOT NULL AND valid_from < coalesce(valid_to, fam_inf())),
-- the regular expressions run once per distinct postcode and address line, not per row
pcs AS (SELECT pc_raw, fam_pc(pc_raw) AS postcode FROM (SELECT DISTINCT pc_raw FROM kept)),
lines AS (SELECT l1, l2, fam_line(l1, l2) AS line FROM (SELECT DISTINCT l1, l2 FROM kept))
SELECT k.person_key, k.source, k.uprn, p.postcode, l.line, k.valid_from, k.valid_to, k.known_from, k.end_known_from
FROM kept k
JOIN pcs p ON p.pc_raw IS NOT DISTINCT FROM k.pc_raw
JOIN lines l ON l.l1 IS NOT DISTINCT FROM k.l1 AND l.l2 IS NOT DISTINCT FROM k.l2;

CREATE OR REPLACE TEMP TABLE fam_residence AS
WITH lookup AS (  -- postcode + line -> UPRN, only where every source that gave both agrees
    SELECT postcode, line, min(uprn) AS uprn
    FROM fam_address_raw
    WHERE uprn IS NOT NULL AND postcode IS NOT NULL AND regexp_matches(line, '[a-z]{2,}')
    GROUP BY postcode, line HAVING count(DISTINCT uprn) = 1
),
keyed AS (
    SELECT r.*, coalesce(r.uprn, l.uprn) AS uprn_final,
           CASE WHEN r.uprn IS NOT NULL THEN 'uprn' WHEN l.uprn IS NOT NULL THEN 'uprn (looked up)'
                ELSE 'postcode + line' END AS address_basis,
           coalesce('uprn:' || coalesce(r.uprn, l.uprn), 'pc:' || r.postcode || '|' || r.line) AS address_key,
           r.uprn IS NOT NULL OR l.uprn IS NOT NULL
             OR (r.postcode IS NOT NULL AND regexp_matches(r.line, '[a-z]{2,}') AND NOT fam_sub_building(r.line)) AS complete
    FROM fam_address_raw r LEFT JOIN lookup l ON r.uprn IS NULL AND l.postcode = r.postcode AND l.line = r.line
),
bare AS (  -- a bare "flat 4" at a postcode: the one complete address there that starts with it
    SELECT b.person_key, b.source, b.postcode, b.line, b.valid_from, b.valid_to, b.known_from, b.end_known_from,
           min(c.address_key) AS address_key, min(c.uprn_final) AS uprn_final
    FROM keyed b JOIN keyed c ON c.complete AND c.postcode = b.postcode AND starts_with(c.line, b.line || ' ')
    WHERE NOT b.complete AND b.postcode IS NOT NULL AND fam_sub_building(b.line)
    GROUP BY ALL HAVING count(DISTINCT c.address_key) = 1
)
SELECT person_key, source, uprn_final AS uprn, postcode, address_basis, address_key, valid_from, valid_to,
       known_from, end_known_from
FROM keyed WHERE complete
UNION ALL
SELECT person_key, source, uprn_final, postcode, 'flat matched at postcode', address_key, valid_from, valid_to,
       known_from, end_known_from
FROM bare;
