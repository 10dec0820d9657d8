"""Health: the 0-19 nursing and CAMHS FHIR R4 bulk export, flattened into tables.

Each NDJSON line is one resource. Lines are read with their line numbers and flattened
in DuckDB's JSON functions; extensions are found by their url, never by position. A
line that is not JSON, or not the resource type its file promises, or longer than
``staging.MAX_RECORD_BYTES``, is an issue for quarantine with its line number; the rest
of the file is staged.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import staging
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
                # NDJSON has no header: line 1 is a resource, counted and checked like any other
                tables[name] = RawTable(rows, issues if i == 0 else issues.slice(0, 0), header, header_lines=0)
        finally:
            _drop_lines(con)
    return tables


def _parse_lines(con: duckdb.DuckDBPyConnection, path: Path, resource_type: str) -> pa.Table:
    """Parse each line once into the resource's shape, in the temp table ``_lines``
    (r, _line), and return issues for lines that are not JSON, not the resource type the
    file promises, or too long to be read (those are never parsed)."""
    limit, shown = staging.MAX_RECORD_BYTES, staging.SHOWN_CHARS
    too_long = staging.too_long_message("a line of {:,} bytes").replace("'", "''")  # for DuckDB's format()
    lines = read_lines(path.read_bytes())
    raw = pa.table({"text": lines, "_line": pa.array(np.arange(1, len(lines) + 1, dtype=np.int64))})
    raw = pa.Table.from_batches(raw.to_batches(max_chunksize=20_000), raw.schema)  # batches DuckDB can parse in parallel
    con.register("_text", raw)
    try:  # the text itself is kept only for the lines that are reported
        parse = f"""
            CREATE OR REPLACE TEMP TABLE _parsed AS
            SELECT <try>(from_json(text, '{SHAPES[resource_type]}')) AS r, _line
            FROM _text WHERE NOT {BLANK} AND strlen(text) <= {limit}"""
        try:  # try() costs twice the parse: it is needed only when a line is not JSON
            con.execute(parse.replace("<try>", ""))
        except duckdb.Error:
            con.execute(parse.replace("<try>", "try"))
        con.execute(f"CREATE OR REPLACE TEMP VIEW _lines AS SELECT r, _line FROM _parsed "
                    f"WHERE r.resourceType = '{resource_type}'")
        bad = con.sql(f"""
            SELECT _line AS line_no, NULL AS column_name,
                   CASE WHEN r IS NULL THEN 'unreadable_line' ELSE 'wrong_resource_type' END AS rule,
                   'hard' AS severity, left(text, {shown}) AS raw_value,
                   CASE WHEN r IS NOT NULL THEN 'not a {resource_type} resource'
                        WHEN json_valid(text) THEN 'JSON, but not in the shape of a {resource_type} resource'
                        ELSE 'not valid JSON' END AS message
            FROM (SELECT r, _line FROM _parsed WHERE r IS NULL OR r.resourceType IS DISTINCT FROM '{resource_type}')
                 JOIN _text USING (_line)
            UNION ALL
            SELECT _line, NULL, 'record_too_long', 'hard', left(text, {shown}), format('{too_long}', strlen(text))
            FROM _text WHERE strlen(text) > {limit} AND NOT {BLANK}
            ORDER BY _line""").to_arrow_table()
    finally:
        con.unregister("_text")
    return bad.cast(ISSUE_SCHEMA)


# A blank line (nothing but spaces, tabs or a \r) is neither a resource nor an issue; the
# same test counts NDJSON rows in drops.rows_in. DuckDB's trim() alone strips only spaces.
BLANK = "trim(text, ' \t\r') = ''"


def ndjson_rows(data: bytes) -> int:
    """Data rows of an NDJSON file as ingestion counts them: its non-blank lines."""
    return sum(1 for line in read_lines(data).to_pylist() if line.strip(" \t\r"))


def _drop_lines(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP VIEW IF EXISTS _lines")
    con.execute("DROP TABLE IF EXISTS _parsed")


# Characters other than \n that str.splitlines() also ends a line at (UTF-8 bytes).
_OTHER_LINE_ENDS = (0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E)


def read_lines(data: bytes) -> pa.Array:
    """The lines of UTF-8 text, exactly as ``data.decode("utf-8", errors="replace").splitlines()``.

    The usual file (valid UTF-8, lines ended by \n only) is split by Arrow without making
    a Python string per line; any other file goes the slow, literal way."""
    if _only_newline_line_ends(data):
        try:
            whole = pa.LargeBinaryArray.from_buffers(  # the bytes as one value, without a copy
                pa.large_binary(), 1, [None, pa.py_buffer(np.array([0, len(data)], np.int64)), pa.py_buffer(data)])
            text = whole.cast(pa.large_string())  # validates UTF-8
        except pa.ArrowInvalid:
            text = None
        if text is not None:
            lines = pc.split_pattern(text, "\n").flatten()
            if not data or data.endswith(b"\n"):  # splitlines() gives no empty last line
                lines = lines.slice(0, len(lines) - 1)
            return lines.cast(pa.string()) if len(data) < 2**31 - 1 else lines
    return pa.array(data.decode("utf-8", errors="replace").splitlines(), pa.string())


def _only_newline_line_ends(data: bytes) -> bool:
    """No byte sequence that str.splitlines() would also break a line at: \r, \v, \f,
    \x1c-\x1e, U+0085 (C2 85), U+2028 and U+2029 (E2 80 A8/A9)."""
    if any(bytes([b]) in data for b in _OTHER_LINE_ENDS):  # single bytes: a fast scan each
        return False
    if data.isascii():
        return True
    return not any(_contains(data, prefix, last) for prefix, last in ((b"\xc2", 0x85), (b"\xe2\x80", 0xA8), (b"\xe2\x80", 0xA9)))


def _contains(data: bytes, prefix: bytes, last: int) -> bool:
    """Whether ``prefix + bytes([last])`` occurs, found by its last byte: a single byte
    is scanned for far faster than a sequence, and is rare in names and JSON."""
    at = data.find(bytes([last]))
    while at != -1:
        if data[max(0, at - len(prefix)):at] == prefix:
            return True
        at = data.find(bytes([last]), at + 1)
    return False
