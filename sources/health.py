"""Health: the 0-19 nursing and CAMHS FHIR R4 bulk export, flattened into tables.

Each NDJSON line is one resource. Lines are read with their line numbers and flattened
in DuckDB's JSON functions; extensions are found by their url, never by position. A
line that is not JSON, or not the resource type its file promises, is an issue for
quarantine with its line number; the rest of the file is staged.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from .contracts import Contract, load_contract
from .drops import Drop
from .staging import ISSUE_SCHEMA, RawTable

SYSTEM = "health"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
VERIFICATION = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
ETHNICITY = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
RESOURCE_OF_FILE = {"Patient.ndjson": "Patient", "RelatedPerson.ndjson": "RelatedPerson",
                    "Encounter.ndjson": "Encounter", "ServiceRequest.ndjson": "ServiceRequest"}


def contract() -> Contract:
    return load_contract(SYSTEM)


def _ext(json_path: str, url: str, value: str) -> str:
    """The value of the extension with this url in the array at ``json_path``."""
    return (f"(SELECT json_extract_string(e, '{value}') FROM unnest(CAST(json_extract(doc, '{json_path}') AS JSON[])) AS t(e) "
            f"WHERE json_extract_string(e, '$.url') = '{url}' LIMIT 1)")


def _ref_id(path: str) -> str:
    return f"regexp_extract(json_extract_string(doc, '{path}'), '^[A-Za-z]+/(.+)$', 1)"


# One SELECT per flattened table, over _lines(doc JSON, _line) of one resource type.
FLATTEN = {
    "patients": f"""
        SELECT json_extract_string(doc, '$.id') AS patient_id, json_extract_string(doc, '$.gender') AS gender,
               json_extract_string(doc, '$.birthDate') AS birth_date,
               {_ext('$.extension', ETHNICITY, '$.valueCodeableConcept.coding[0].code')} AS ethnic_category,
               json_extract_string(doc, '$.generalPractitioner[0].identifier.value') AS gp_practice,
               left(json_extract_string(doc, '$.deceasedDateTime'), 10) AS deceased_date, _line
        FROM _lines""",
    "patient_identifiers": f"""
        SELECT json_extract_string(doc, '$.id') AS patient_id, json_extract_string(i, '$.system') AS identifier_system,
               json_extract_string(i, '$.value') AS nhs_number,
               (SELECT json_extract_string(e, '$.valueCodeableConcept.coding[0].code')
                  FROM unnest(CAST(coalesce(json_extract(i, '$.extension'), '[]') AS JSON[])) AS x(e)
                 WHERE json_extract_string(e, '$.url') = '{VERIFICATION}' LIMIT 1) AS verification_status, _line
        FROM _lines, unnest(CAST(coalesce(json_extract(doc, '$.identifier'), '[]') AS JSON[])) AS t(i)""",
    "patient_names": """
        SELECT json_extract_string(doc, '$.id') AS patient_id, CAST(n.k AS VARCHAR) AS name_index,
               json_extract_string(n.v, '$.use') AS name_use, json_extract_string(n.v, '$.family') AS family,
               array_to_string(CAST(json_extract_string(n.v, '$.given[*]') AS VARCHAR[]), ' ') AS given, _line
        FROM _lines, unnest(list_transform(CAST(coalesce(json_extract(doc, '$.name'), '[]') AS JSON[]),
                                           lambda v, k: {'v': v, 'k': k})) AS t(n)""",
    "patient_addresses": """
        SELECT json_extract_string(doc, '$.id') AS patient_id, CAST(a.k AS VARCHAR) AS address_index,
               json_extract_string(a.v, '$.line[0]') AS line1, json_extract_string(a.v, '$.line[1]') AS line2,
               json_extract_string(a.v, '$.city') AS city, json_extract_string(a.v, '$.postalCode') AS postcode,
               json_extract_string(a.v, '$.period.start') AS period_start,
               json_extract_string(a.v, '$.period.end') AS period_end, _line
        FROM _lines, unnest(list_transform(CAST(coalesce(json_extract(doc, '$.address'), '[]') AS JSON[]),
                                           lambda v, k: {'v': v, 'k': k})) AS t(a)""",
    "related_persons": f"""
        SELECT json_extract_string(doc, '$.id') AS related_person_id, {_ref_id('$.patient.reference')} AS patient_id,
               json_extract_string(doc, '$.relationship[0].coding[0].code') AS relationship,
               json_extract_string(doc, '$.name[0].family') AS family,
               array_to_string(CAST(json_extract_string(doc, '$.name[0].given[*]') AS VARCHAR[]), ' ') AS given,
               json_extract_string(doc, '$.birthDate') AS birth_date,
               (SELECT json_extract_string(i, '$.value') FROM unnest(CAST(coalesce(json_extract(doc, '$.identifier'), '[]') AS JSON[])) AS t(i)
                 WHERE json_extract_string(i, '$.system') = '{NHS}' LIMIT 1) AS nhs_number,
               json_extract_string(doc, '$.telecom[0].value') AS phone,
               json_extract_string(doc, '$.address[0].line[0]') AS line1,
               json_extract_string(doc, '$.address[0].postalCode') AS postcode, _line
        FROM _lines""",
    "encounters": f"""
        SELECT json_extract_string(doc, '$.id') AS encounter_id, {_ref_id('$.subject.reference')} AS patient_id,
               json_extract_string(doc, '$.status') AS status,
               json_extract_string(doc, '$.type[0].coding[0].code') AS review_type,
               left(json_extract_string(doc, '$.period.start'), 10) AS start_date,
               {_ext('$.extension', 'urn:earlyhelp:attendance-status', '$.valueCode')} AS attendance_status, _line
        FROM _lines""",
    "service_requests": f"""
        SELECT json_extract_string(doc, '$.id') AS service_request_id, {_ref_id('$.subject.reference')} AS patient_id,
               left(json_extract_string(doc, '$.authoredOn'), 10) AS authored_on,
               json_extract_string(doc, '$.requester.display') AS requester,
               json_extract_string(doc, '$.priority') AS priority,
               array_to_string(CAST(json_extract_string(doc, '$.reasonCode[*].coding[0].code') AS VARCHAR[]), ';') AS reason_codes,
               json_extract_string(doc, '$.status') AS status,
               {_ext('$.extension', 'urn:earlyhelp:rejection-date', '$.valueDate')} AS rejection_date,
               {_ext('$.extension', 'urn:earlyhelp:discharge-date', '$.valueDate')} AS discharge_date, _line
        FROM _lines""",
}


def read_drop(con: duckdb.DuckDBPyConnection, drop: Drop) -> dict[str, RawTable]:
    """Every flattened table of a health drop, as text with line numbers."""
    tables: dict[str, RawTable] = {}
    by_file: dict[str, list[str]] = {}
    for table in contract().tables:
        by_file.setdefault(table.file, []).append(table.name)
    for file_name, table_names in by_file.items():
        path = drop.folder / file_name
        if not path.exists():
            continue
        lines, issues = _json_lines(con, path, RESOURCE_OF_FILE[file_name])
        con.register("_lines", lines)
        try:
            for i, name in enumerate(table_names):
                rows = con.sql(FLATTEN[name]).to_arrow_table()
                header = [c for c in rows.column_names if c != "_line"]
                # the file's unreadable lines are reported once, with its first table
                tables[name] = RawTable(rows, issues if i == 0 else issues.slice(0, 0), header)
        finally:
            con.unregister("_lines")
    return tables


def _json_lines(con: duckdb.DuckDBPyConnection, path: Path, resource_type: str) -> tuple[pa.Table, pa.Table]:
    """Lines that are JSON resources of the expected type, and issues for the rest."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    raw = pa.table({"text": pa.array(text.splitlines(), pa.string())})
    raw = raw.append_column("_line", pa.array(range(1, raw.num_rows + 1), pa.int64()))
    con.register("_text", raw)
    try:
        good = con.sql(f"""
            SELECT CAST(text AS JSON) AS doc, _line FROM _text
            WHERE json_valid(text) AND json_extract_string(text, '$.resourceType') = '{resource_type}'""").to_arrow_table()
        bad = con.sql(f"""
            SELECT _line AS line_no, NULL AS column_name,
                   CASE WHEN json_valid(text) THEN 'wrong_resource_type' ELSE 'unreadable_line' END AS rule,
                   'hard' AS severity, left(text, 500) AS raw_value,
                   CASE WHEN json_valid(text) THEN 'not a {resource_type} resource' ELSE 'not valid JSON' END AS message
            FROM _text WHERE trim(text) <> '' AND NOT (json_valid(text)
                  AND coalesce(json_extract_string(text, '$.resourceType') = '{resource_type}', false))""").to_arrow_table()
    finally:
        con.unregister("_text")
    return good, bad.cast(ISSUE_SCHEMA)
