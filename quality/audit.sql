-- The audit schema: append-only records of every run, drop, file, check and figure
-- the review data workstream audits. Every audit table is declared here, once;
-- quality/audit.py ensure_audit runs this file (idempotent) before anything writes.
CREATE SCHEMA IF NOT EXISTS audit;

-- One row per build (earlyhelp build) or per Dagster run launched another way.
CREATE TABLE IF NOT EXISTS audit.run (
    run_id VARCHAR, command VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
    status VARCHAR, detail VARCHAR);

-- Every check result, with what it observed and expected and a sample of failing rows.
CREATE TABLE IF NOT EXISTS audit.check_result (
    run_id VARCHAR, partition VARCHAR, asset VARCHAR, check_name VARCHAR, severity VARCHAR,
    passed BOOLEAN, observed VARCHAR, expected VARCHAR, failing_rows BIGINT, sample VARCHAR,
    checked_at TIMESTAMPTZ, build_id VARCHAR);

-- What quarantine holds at the end of each build, by system and rule.
CREATE TABLE IF NOT EXISTS audit.quarantine_summary (
    build_id VARCHAR, system VARCHAR, rule VARCHAR, rows BIGINT, files BIGINT, recorded_at TIMESTAMPTZ);

-- Row counts, null and code shares per run: what the drift check compares.
CREATE TABLE IF NOT EXISTS audit.table_profile (
    run_id VARCHAR, table_name VARCHAR, column_name VARCHAR, metric VARCHAR, code VARCHAR,
    value DOUBLE, profiled_at TIMESTAMPTZ);

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
    status VARCHAR, reason VARCHAR, fingerprint VARCHAR, recorded_at TIMESTAMPTZ, manifest_rows BIGINT
);

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

-- Great Expectations results, one row per expectation per validated table and drop.
CREATE TABLE IF NOT EXISTS audit.gx_validation (
    run_id VARCHAR, system VARCHAR, extract_date DATE, table_name VARCHAR, suite VARCHAR,
    expectation VARCHAR, column_name VARCHAR, success BOOLEAN, element_count BIGINT,
    unexpected_count BIGINT, partial_unexpected VARCHAR, recorded_at TIMESTAMPTZ
);

-- A drop_file made before manifest_rows existed gets the column in place (last, where
-- ALTER TABLE puts it: rows are inserted by column name).
ALTER TABLE audit.drop_file ADD COLUMN IF NOT EXISTS manifest_rows BIGINT;

-- Identity quality figures per run (assets/identity/engine.py record_metrics).
CREATE TABLE IF NOT EXISTS audit.identity_metric (
    run_id VARCHAR, metric VARCHAR, value DOUBLE, recorded_at TIMESTAMPTZ
);

-- Identity scored against a synthetic city's truth (earlyhelp build --truth, evaluate-identity).
CREATE TABLE IF NOT EXISTS audit.identity_evaluation (
    run_id VARCHAR NOT NULL,
    evaluated_at TIMESTAMPTZ NOT NULL,
    scope VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE
);

-- What each step's last successful run read, as fingerprints (assets/inputs.py): a build
-- whose inputs match skips the step. scope 'staging/<system>' or 'warehouse'.
CREATE TABLE IF NOT EXISTS audit.input_fingerprint (
    scope VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL, run_id VARCHAR, recorded_at TIMESTAMPTZ NOT NULL
);
