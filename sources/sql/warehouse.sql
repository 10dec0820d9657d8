-- The build warehouse's ingestion schemas. Audit tables are append-only logs; the
-- *_loaded views say what is in staging now.
CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS history;
CREATE SCHEMA IF NOT EXISTS quarantine;
CREATE SCHEMA IF NOT EXISTS audit;

-- One row per drop per ingestion attempt: staged, unchanged (identical re-delivery),
-- rejected (files disagree with the manifest), held (the snapshot would delete more of
-- a table than quality/thresholds.yaml allows); 'staging' when a (re)staging begins, and
-- 'interrupted' when the next run cleared what a dead run left half-staged.
CREATE TABLE IF NOT EXISTS audit.drop (
    run_id VARCHAR, system VARCHAR, extract_date DATE, mode VARCHAR, fingerprint VARCHAR,
    status VARCHAR, reason VARCHAR, recorded_at TIMESTAMPTZ
);

-- One row per delivered file per ingestion attempt. For every staged file
-- delivered_rows = staged_rows + quarantined_rows.
CREATE TABLE IF NOT EXISTS audit.drop_file (
    run_id VARCHAR, system VARCHAR, extract_date DATE, file_name VARCHAR,
    delivered_rows BIGINT, staged_rows BIGINT, quarantined_rows BIGINT, flagged_values BIGINT,
    status VARCHAR, reason VARCHAR, fingerprint VARCHAR, recorded_at TIMESTAMPTZ
);

-- Every rule a delivered row or value broke: hard ones kept the row out of staging,
-- soft ones moved a value to its <column>_flagged column.
CREATE TABLE IF NOT EXISTS quarantine.issue (
    system VARCHAR, extract_date DATE, file_name VARCHAR, table_name VARCHAR, line_no BIGINT,
    column_name VARCHAR, rule VARCHAR, severity VARCHAR, raw_value VARCHAR, message VARCHAR
);

-- The delivery of each system and date that staging holds now. Staging a drop starts
-- with a 'staging' row and ends with a 'staged' one: a date whose latest of the two is
-- 'staging' was being (re)staged by a run that died, is not loaded, and the next run
-- stages it again from scratch.
CREATE OR REPLACE VIEW audit.drop_loaded AS
SELECT * FROM (
    SELECT * FROM audit.drop WHERE status IN ('staged', 'staging')
    QUALIFY row_number() OVER (PARTITION BY system, extract_date ORDER BY recorded_at DESC) = 1)
WHERE status = 'staged';

-- Dates a run died while staging, and that nothing has staged since.
CREATE OR REPLACE VIEW audit.drop_interrupted AS
SELECT * FROM (
    SELECT * FROM audit.drop WHERE status IN ('staged', 'staging', 'interrupted')
    QUALIFY row_number() OVER (PARTITION BY system, extract_date ORDER BY recorded_at DESC) = 1)
WHERE status = 'staging';

-- An operator's acceptance of a snapshot that deletes more than the mass-deletion guard
-- allows (`earlyhelp accept-deletions`): for that delivery only (its fingerprint).
CREATE TABLE IF NOT EXISTS audit.deletion_acceptance (
    system VARCHAR, extract_date DATE, fingerprint VARCHAR, accepted_by VARCHAR, accepted_at TIMESTAMPTZ
);

-- Folders and files in a system's landing folder that are not drops (a folder name that
-- is not a YYYY-MM-DD date): reported on every run that sees them, never read.
CREATE TABLE IF NOT EXISTS audit.landing_ignored (
    run_id VARCHAR, system VARCHAR, name VARCHAR, reason VARCHAR, recorded_at TIMESTAMPTZ
);

-- The set of loaded drops each system's history tables were last rebuilt from: a run
-- that died between staging and history leaves them behind it, and the next run sees it.
CREATE TABLE IF NOT EXISTS audit.history_built (
    system VARCHAR, loaded VARCHAR, built_at TIMESTAMPTZ
);

CREATE OR REPLACE VIEW audit.drop_file_loaded AS
SELECT f.* FROM audit.drop_file f
JOIN audit.drop_loaded d ON d.run_id = f.run_id AND d.system = f.system AND d.extract_date = f.extract_date;

-- Great Expectations results, one row per expectation per validated table and drop.
CREATE TABLE IF NOT EXISTS audit.gx_validation (
    run_id VARCHAR, system VARCHAR, extract_date DATE, table_name VARCHAR, suite VARCHAR,
    expectation VARCHAR, column_name VARCHAR, success BOOLEAN, element_count BIGINT,
    unexpected_count BIGINT, partial_unexpected VARCHAR, recorded_at TIMESTAMPTZ
);
