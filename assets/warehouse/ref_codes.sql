-- model.ref_ethnicity: how every ethnicity value the sources write maps to one CBDS code and
-- group. Grain: (scheme, value). scheme 'cbds' = the 4-character CBDS / CIN codes
-- (education, social care, early help when it records a code), 'nhs' = the NHS single-letter
-- ethnic category (health), 'text' = early help's free text, matched lower-cased and trimmed.
-- is_known is false for refused / not obtained / not stated. Data: ethnicity_codes.csv.
CREATE OR REPLACE TABLE model.ref_ethnicity AS
SELECT scheme, value, ethnicity_code, ethnicity_group, is_known, description
FROM read_csv('${warehouse_dir}/ethnicity_codes.csv', header = true, all_varchar = false,
              columns = {'scheme': 'VARCHAR', 'value': 'VARCHAR', 'ethnicity_code': 'VARCHAR',
                         'ethnicity_group': 'VARCHAR', 'is_known': 'BOOLEAN', 'description': 'VARCHAR'});

-- model.ref_referral_source: referral / contact source codes and their harmonised
-- source_group. Grain: (scheme, code). scheme 'cin' = the CIN census list used by the MASH,
-- social care and early help (1A..10); 'camhs' = the CAMHS ServiceRequest list.
-- Data: referral_sources.csv.
CREATE OR REPLACE TABLE model.ref_referral_source AS
SELECT scheme, code, description, source_group
FROM read_csv('${warehouse_dir}/referral_sources.csv', header = true,
              columns = {'scheme': 'VARCHAR', 'code': 'VARCHAR', 'description': 'VARCHAR',
                         'source_group': 'VARCHAR'});
