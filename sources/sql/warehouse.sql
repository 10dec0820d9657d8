-- The build warehouse's ingestion schemas. Audit tables are append-only logs; the
-- *_loaded views say what is in staging now.
CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS history;
CREATE SCHEMA IF NOT EXISTS quarantine;

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

CREATE OR REPLACE VIEW audit.drop_file_loaded AS
SELECT f.* FROM audit.drop_file f
JOIN audit.drop_loaded d ON d.run_id = f.run_id AND d.system = f.system AND d.extract_date = f.extract_date;

