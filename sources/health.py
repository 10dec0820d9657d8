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


CODES = '[{"coding": [{"code": "VARCHAR"}]}]'
CODED_EXTENSIONS = '[{"url": "VARCHAR", "valueCode": "VARCHAR", "valueDate": "VARCHAR", "valueCodeableConcept": {"coding": [{"code": "VARCHAR"}]}}]'
NAMES = '[{"use": "VARCHAR", "family": "VARCHAR", "given": ["VARCHAR"]}]'
ADDRESSES = '[{"line": ["VARCHAR"], "city": "VARCHAR", "postalCode": "VARCHAR", "period": {"start": "VARCHAR", "end": "VARCHAR"}}]'
IDENTIFIERS = '[{"system": "VARCHAR", "value": "VARCHAR", "extension": ' + CODED_EXTENSIONS + '}]'
# The parts of each resource the tables need: every line is parsed once, into this shape.
SHAPES = {
    "Patient": '{"resourceType": "VARCHAR", "id": "VARCHAR", "gender": "VARCHAR", "birthDate": "VARCHAR", '
               '"deceasedDateTime": "VARCHAR", "extension": ' + CODED_EXTENSIONS + ', "identifier": ' + IDENTIFIERS
               + ', "name": ' + NAMES + ', "address": ' + ADDRESSES
               + ', "generalPractitioner": [{"identifier": {"value": "VARCHAR"}}]}',
    "RelatedPerson": '{"resourceType": "VARCHAR", "id": "VARCHAR", "patient": {"reference": "VARCHAR"}, '
                     '"relationship": ' + CODES + ', "name": ' + NAMES + ', "birthDate": "VARCHAR", '
                     '"identifier": ' + IDENTIFIERS + ', "telecom": [{"value": "VARCHAR"}], "address": ' + ADDRESSES + '}',
    "Encounter": '{"resourceType": "VARCHAR", "id": "VARCHAR", "status": "VARCHAR", "subject": {"reference": "VARCHAR"}, '
                 '"type": ' + CODES + ', "period": {"start": "VARCHAR"}, "extension": ' + CODED_EXTENSIONS + '}',
    "ServiceRequest": '{"resourceType": "VARCHAR", "id": "VARCHAR", "subject": {"reference": "VARCHAR"}, '
                      '"authoredOn": "VARCHAR", "requester": {"display": "VARCHAR"}, "priority": "VARCHAR", '
                      '"reasonCode": ' + CODES + ', "status": "VARCHAR", "extension": ' + CODED_EXTENSIONS + '}',
}


def _ext(url: str, value: str, within: str = "r.extension") -> str:
    """The value of the extension with this url (extensions are found by url, never by position)."""
    return f"list_filter({within}, lambda e: e.url = '{url}')[1].{value}"


def _ref_id(reference: str) -> str:
    return f"regexp_extract({reference}, '^[A-Za-z]+/(.+)$', 1)"


# One SELECT per flattened table, over _lines(r STRUCT, _line) of one resource type.
# unnest() sits in a select list: as a lateral join it is ~50x slower in DuckDB.
FLATTEN = {
    "patients": f"""
        SELECT r.id AS patient_id, r.gender AS gender, r.birthDate AS birth_date,
               {_ext(ETHNICITY, 'valueCodeableConcept.coding[1].code')} AS ethnic_category,
               r.generalPractitioner[1].identifier.value AS gp_practice,
               left(r.deceasedDateTime, 10) AS deceased_date, _line
        FROM _lines""",
    "patient_identifiers": f"""
        SELECT patient_id, i.system AS identifier_system, i.value AS nhs_number,
               {_ext(VERIFICATION, 'valueCodeableConcept.coding[1].code', 'i.extension')} AS verification_status, _line
        FROM (SELECT r.id AS patient_id, unnest(r.identifier) AS i, _line FROM _lines)""",
    "patient_names": """
        SELECT patient_id, CAST(n.k AS VARCHAR) AS name_index, n.v.use AS name_use, n.v.family AS family,
               array_to_string(n.v.given, ' ') AS given, _line
        FROM (SELECT r.id AS patient_id, unnest(list_transform(r.name, lambda v, k: {'v': v, 'k': k})) AS n, _line
              FROM _lines)""",
    "patient_addresses": """
        SELECT patient_id, CAST(a.k AS VARCHAR) AS address_index, a.v.line[1] AS line1, a.v.line[2] AS line2,
               a.v.city AS city, a.v.postalCode AS postcode, a.v.period.start AS period_start,
               a.v.period."end" AS period_end, _line
        FROM (SELECT r.id AS patient_id, unnest(list_transform(r.address, lambda v, k: {'v': v, 'k': k})) AS a, _line
              FROM _lines)""",
    "related_persons": f"""
        SELECT r.id AS related_person_id, {_ref_id('r.patient.reference')} AS patient_id,
               r.relationship[1].coding[1].code AS relationship, r.name[1].family AS family,
               array_to_string(r.name[1].given, ' ') AS given, r.birthDate AS birth_date,
               list_filter(r.identifier, lambda i: i.system = '{NHS}')[1].value AS nhs_number,
               r.telecom[1].value AS phone, r.address[1].line[1] AS line1, r.address[1].postalCode AS postcode, _line
        FROM _lines""",
    "encounters": f"""
        SELECT r.id AS encounter_id, {_ref_id('r.subject.reference')} AS patient_id, r.status AS status,
               r.type[1].coding[1].code AS review_type, left(r.period.start, 10) AS start_date,
               {_ext('urn:earlyhelp:attendance-status', 'valueCode')} AS attendance_status, _line
        FROM _lines""",
    "service_requests": f"""
        SELECT r.id AS service_request_id, {_ref_id('r.subject.reference')} AS patient_id,
               left(r.authoredOn, 10) AS authored_on, r.requester.display AS requester, r.priority AS priority,
               array_to_string(list_transform(r.reasonCode, lambda c: c.coding[1].code), ';') AS reason_codes,
               r.status AS status,
               {_ext('urn:earlyhelp:rejection-date', 'valueDate')} AS rejection_date,
               {_ext('urn:earlyhelp:discharge-date', 'valueDate')} AS discharge_date, _line
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
        issues = _parse_lines(con, path, RESOURCE_OF_FILE[file_name])  # into the temp table _lines
        try:
            for i, name in enumerate(table_names):
                rows = con.sql(FLATTEN[name]).to_arrow_table()
                header = [c for c in rows.column_names if c != "_line"]
                # the file's unreadable lines are reported once, with its first table
                tables[name] = RawTable(rows, issues if i == 0 else issues.slice(0, 0), header)
        finally:
            con.execute("DROP TABLE IF EXISTS _lines")
    return tables


def _parse_lines(con: duckdb.DuckDBPyConnection, path: Path, resource_type: str) -> pa.Table:
    """Parse each line once into the resource's shape, in the temp table ``_lines``
    (r, _line), and return issues for lines that are not JSON or not the resource type
    the file promises."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    raw = pa.table({"text": pa.array(text.splitlines(), pa.string())})
    raw = raw.append_column("_line", pa.array(range(1, raw.num_rows + 1), pa.int64()))
    con.register("_text", raw)
    try:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _parsed AS
            SELECT try(from_json(text, '{SHAPES[resource_type]}')) AS r, text, _line
            FROM _text WHERE trim(text) <> ''""")
        con.execute(f"CREATE OR REPLACE TEMP TABLE _lines AS SELECT r, _line FROM _parsed "
                    f"WHERE r.resourceType = '{resource_type}'")
        bad = con.sql(f"""
            SELECT _line AS line_no, NULL AS column_name,
                   CASE WHEN r IS NULL THEN 'unreadable_line' ELSE 'wrong_resource_type' END AS rule,
                   'hard' AS severity, left(text, 500) AS raw_value,
                   CASE WHEN r IS NULL THEN 'not valid JSON' ELSE 'not a {resource_type} resource' END AS message
            FROM _parsed WHERE r IS NULL OR r.resourceType IS DISTINCT FROM '{resource_type}'""").to_arrow_table()
    finally:
        con.unregister("_text")
        con.execute("DROP TABLE IF EXISTS _parsed")
    return bad.cast(ISSUE_SCHEMA)
