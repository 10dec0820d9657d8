"""Quality checks as plain functions over the build database: each returns an Outcome.

Dagster asset checks (assets/checks.py) are thin wrappers that call these, record the
result in audit.check_result and report it to the UI. Thresholds come from
thresholds.yaml, never from here.
"""

import duckdb

from assets.warehouse.model import TABLE_GRAIN
from sources.contracts import load_contract
from sources.ingest import table_name
from sources.sql_runner import table_exists

from .audit import Outcome, ensure_audit

# The identifier kinds identifier_validity judges: NHS numbers and UPNs key identity, and a
# run of failing ones means a system sent broken identifiers. Postcodes are checked and
# flagged too, but a placeholder (no fixed abode) is a true answer, not a broken identifier.
GATED_IDENTIFIERS = ("nhs_number", "upn")


def identifier_columns(system: str) -> dict[str, list[str]]:
    """Staged table -> its NHS number and UPN columns, as the system's contract marks them."""
    found = {}
    for table in load_contract(system).tables:
        columns = [c.name for c in table.columns if c.identifier in GATED_IDENTIFIERS]
        if columns:
            found[table_name(system, table)] = columns
    return found


def reconciliation(con: duckdb.DuckDBPyConnection, system: str) -> Outcome:
    """Every staged file reconciles with its drop's manifest: the rows delivered are the
    rows the manifest states, and delivered = staged + quarantined. A file whose
    manifest count was never recorded (manifest_rows NULL) cannot be shown to agree, so
    it fails too."""
    rows = con.execute("""
        SELECT system, extract_date::VARCHAR, file_name, manifest_rows, delivered_rows, staged_rows, quarantined_rows,
               CASE WHEN manifest_rows IS NULL THEN 'manifest rows not recorded'
                    WHEN delivered_rows <> manifest_rows THEN 'delivered rows differ from the manifest'
                    ELSE 'delivered <> staged + quarantined' END AS problem
        FROM audit.drop_file_loaded
        WHERE system = ? AND (delivered_rows IS DISTINCT FROM manifest_rows
                              OR delivered_rows IS DISTINCT FROM staged_rows + quarantined_rows)
        ORDER BY extract_date, file_name
    """, [system]).fetchall()
    files = con.execute("SELECT count(*) FROM audit.drop_file_loaded WHERE system = ?", [system]).fetchall()[0][0]
    off_manifest = sum(1 for r in rows if r[3] is None or r[4] != r[3])
    unbalanced = sum(1 for r in rows if r[4] != r[5] + r[6])
    return Outcome(passed=not rows,
                   observed={"files": files, "unbalanced": unbalanced, "differ_from_manifest": off_manifest},
                   expected="delivered = the manifest's rows = staged + quarantined for every file",
                   failing_rows=len(rows),
                   sample=[dict(zip(("system", "extract_date", "file", "manifest_rows", "delivered", "staged",
                                     "quarantined", "problem"), r)) for r in rows])


def invalid_identifiers(con: duckdb.DuckDBPyConnection, system: str, max_share: float, min_values: int) -> Outcome:
    """Per drop and per NHS number or UPN column of the system's contract: the share of
    values that failed their check (moved to <column>_flagged) stays under max_share.
    A drop holding fewer than min_values values in a column is not judged on it."""
    found = []
    for table, columns in identifier_columns(system).items():
        if not table_exists(con, f"staging.{table}"):
            continue
        for column in columns:
            found += con.execute(f"""
                SELECT '{table}', '{column}', extract_date::VARCHAR,
                       count("{column}") + count("{column}_flagged") AS values_seen,
                       count("{column}_flagged") AS invalid
                FROM staging.{table} GROUP BY extract_date
            """).fetchall()
    judged = [r for r in found if r[3] >= min_values]
    failing = [r for r in judged if r[4] / r[3] > max_share]
    worst = max((r[4] / r[3] for r in judged), default=0.0)
    return Outcome(passed=not failing,
                   observed={"worst_invalid_share": round(worst, 4), "column_drops_judged": len(judged)},
                   expected={"max_invalid_share": max_share}, failing_rows=sum(r[4] for r in failing),
                   sample=[dict(zip(("table", "column", "extract_date", "values", "invalid"), r)) for r in failing])


def freshness(con: duckdb.DuckDBPyConnection, system: str, max_days_behind: int) -> Outcome:
    """The system's newest staged drop is at most max_days_behind the newest drop of any system."""
    newest, overall = con.execute("""
        SELECT max(extract_date) FILTER (WHERE system = ?), max(extract_date)
        FROM audit.drop_loaded
    """, [system]).fetchall()[0]
    behind = None if newest is None else (overall - newest).days
    return Outcome(passed=behind is not None and behind <= max_days_behind,
                   observed={"newest_drop": str(newest), "days_behind": behind},
                   expected={"max_days_behind": max_days_behind})


def identity_constraints(con: duckdb.DuckDBPyConnection, limits: dict, sample_size: int = 10) -> Outcome:
    """No person holds two NHS numbers or two UPNs (a pupil's former UPN is the same
    child): either would put two children's histories on one. A failure names a sample
    of the persons at fault."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _identifiers_per_person AS
        SELECT p.person_key, count(DISTINCT s.nhs_number) AS nhs, count(DISTINCT coalesce(f.upn, s.upn)) AS upn
        FROM identity.person_record p
        JOIN identity.standardised_record s USING (record_key)
        LEFT JOIN (SELECT DISTINCT former_upn AS former, upn FROM identity.standardised_record
                   WHERE former_upn IS NOT NULL AND upn IS NOT NULL) f ON f.former = s.upn
        GROUP BY 1""")
    two_nhs, two_upn = con.execute("SELECT count(*) FILTER (WHERE nhs > 1), count(*) FILTER (WHERE upn > 1) "
                                   "FROM _identifiers_per_person").fetchall()[0]
    failures = []
    for count, column, limit, what in ((two_nhs, "nhs", "max_persons_with_two_nhs_numbers", "two NHS numbers"),
                                       (two_upn, "upn", "max_persons_with_two_upns", "two UPNs")):
        if count > limits[limit]:
            keys = [k for (k,) in con.execute(f"SELECT person_key FROM _identifiers_per_person WHERE {column} > 1 "
                                              f"ORDER BY 1 LIMIT {sample_size}").fetchall()]
            failures.append({"problem": f"{count} persons hold {what}", "person_keys": keys})
    con.execute("DROP TABLE _identifiers_per_person")
    return Outcome(passed=not failures,
                   observed={"persons_with_two_nhs_numbers": two_nhs, "persons_with_two_upns": two_upn},
                   expected={k: v for k, v in limits.items() if k != "severity"},
                   failing_rows=two_nhs + two_upn, sample=failures)


def identity_coverage(con: duckdb.DuckDBPyConnection, limits: dict) -> Outcome:
    """Match rate per system (share of its records whose person is known to another
    system), NHS number and UPN coverage, the review queue's size against the records,
    and twin-guard violations, against limits: how joined-up this data is, which depends
    on the data, so a warning, never a reason to refuse publishing."""
    match = dict(con.execute("""
        SELECT s.system, avg((m.system_count > 1)::INT)
        FROM identity.person_record p JOIN identity.person m USING (person_key)
        JOIN identity.standardised_record s USING (record_key) GROUP BY 1
    """).fetchall())
    coverage = dict(con.execute("SELECT system, avg((nhs_number IS NOT NULL)::INT) "
                                "FROM identity.standardised_record GROUP BY 1").fetchall())
    upn_coverage = dict(con.execute("SELECT system, avg((upn IS NOT NULL)::INT) "
                                    "FROM identity.standardised_record GROUP BY 1").fetchall())
    records, queue = con.execute("SELECT (SELECT count(*) FROM identity.person_record), "
                                 "(SELECT count(*) FROM identity.review_queue)").fetchall()[0]
    share = queue / records if records else 0.0
    # accepted probabilistic links of the kind the twin guard refuses (candidate_edges.sql):
    # records born the same day, no identifier agreeing, names not swapped, forenames
    # neither equal, nicknames of one name nor a slip apart, where twins are shown on
    # that day or this data makes unshown twins likely (identity.twin_share)
    (twin_like,) = con.execute("""
        SELECT count(*)
        FROM identity.link k
        JOIN identity.standardised_record a ON a.record_key = k.record_l
        JOIN identity.standardised_record b ON b.record_key = k.record_r
        WHERE k.status = 'accepted' AND k.link_rule = 'probabilistic'
          AND a.dob = b.dob AND a.forename <> b.forename
          AND jaro_winkler_similarity(a.forename, b.forename) < 0.92
          AND len(list_intersect(a.forename_group, b.forename_group)) = 0
          AND NOT coalesce(a.nhs_number = b.nhs_number OR a.upn = b.upn, false)
          AND NOT coalesce(damerau_levenshtein(a.forename, b.surname) <= 1 AND damerau_levenshtein(a.surname, b.forename) <= 1, false)
          AND (EXISTS (SELECT 1 FROM identity.twin_birth t WHERE t.dob = a.dob
                       AND ((t.key_kind = 'surname' AND t.key_value IN (a.surname, b.surname))
                         OR (t.key_kind = 'postcode' AND t.key_value IN (a.postcode, b.postcode))))
               OR ((SELECT share FROM identity.twin_share) > 1 - (SELECT threshold FROM identity.link_state)
                   AND damerau_levenshtein(a.forename, b.forename) > 1))
    """).fetchall()[0]
    failures = [f"{s} match rate {match[s]:.1%} below {m:.0%}"
                for s, m in limits["min_match_rate"].items() if s in match and match[s] < m]
    failures += [f"{s} NHS coverage {coverage[s]:.1%} below {m:.0%}"
                 for s, m in limits["min_nhs_coverage"].items() if s in coverage and coverage[s] < m]
    if share > limits["max_review_queue_share"]:
        failures.append(f"the review queue is {share:.1%} of records")
    if twin_like > limits["max_twin_guard_violations"]:
        failures.append(f"{twin_like} accepted probabilistic links join same-birthday records under "
                        "different forenames with no identifier agreeing")
    return Outcome(passed=not failures,
                   observed={"match_rate": {k: round(v, 4) for k, v in match.items()},
                             "nhs_coverage": {k: round(v, 4) for k, v in coverage.items()},
                             "upn_coverage": {k: round(v, 4) for k, v in upn_coverage.items()},
                             "review_queue_pairs": queue, "review_queue_share": round(share, 4),
                             "twin_guard_violations": twin_like},
                   expected={k: v for k, v in limits.items() if k != "severity"},
                   failing_rows=len(failures), sample=failures)


def profile_table(con: duckdb.DuckDBPyConnection, run_id: str, table: str, coded_columns: list[str],
                  where: str = "true") -> None:
    """Row count, null share per column and code shares of coded columns (of the rows
    matching `where`) -> audit.table_profile."""
    ensure_audit(con)
    columns = [c for c in con.sql(f"SELECT * FROM {table} LIMIT 0").columns]
    nulls = ", ".join(f'avg(("{c}" IS NULL)::INT)' for c in columns)
    total, *shares = con.sql(f"SELECT count(*), {nulls} FROM {table} WHERE {where}").fetchall()[0]
    rows = [(run_id, table, None, "row_count", None, float(total))]
    rows += [(run_id, table, c, "null_share", None, float(s or 0)) for c, s in zip(columns, shares)]
    for column in coded_columns:
        rows += [(run_id, table, column, "code_share", str(code), float(share)) for code, share in con.sql(
            f'SELECT "{column}", count(*) / sum(count(*)) OVER () FROM {table} WHERE {where} GROUP BY 1').fetchall()]
    con.executemany("INSERT INTO audit.table_profile VALUES (?, ?, ?, ?, ?, ?, now())", rows)


def drift(con: duckdb.DuckDBPyConnection, run_id: str, table: str, limits: dict) -> Outcome:
    """This run's profile of a table against the previous run's: row count, null shares
    and code shares must not move more than the limits (thresholds.yaml: drift)."""
    previous = con.execute("""
        SELECT run_id FROM audit.table_profile WHERE table_name = ? AND run_id <> ?
        GROUP BY run_id ORDER BY max(profiled_at) DESC LIMIT 1
    """, [table, run_id]).fetchall()
    if not previous:
        return Outcome(passed=True, observed="no earlier run to compare with", expected=limits)
    moved = con.execute("""
        WITH now AS (SELECT * FROM audit.table_profile WHERE run_id = $run AND table_name = $table),
        before AS (SELECT * FROM audit.table_profile WHERE run_id = $prev AND table_name = $table)
        SELECT coalesce(n.metric, b.metric) AS metric, coalesce(n.column_name, b.column_name) AS column_name,
               coalesce(n.code, b.code) AS code, b.value AS before, n.value AS now
        FROM now n FULL JOIN before b
          ON n.metric = b.metric AND n.column_name IS NOT DISTINCT FROM b.column_name
         AND n.code IS NOT DISTINCT FROM b.code
        WHERE CASE coalesce(n.metric, b.metric)
                WHEN 'row_count' THEN abs(coalesce(n.value, 0) - coalesce(b.value, 0))
                                      / greatest(coalesce(b.value, 0), 1) > $rows
                WHEN 'null_share' THEN abs(coalesce(n.value, 0) - coalesce(b.value, 0)) > $nulls
                ELSE abs(coalesce(n.value, 0) - coalesce(b.value, 0)) > $codes END
    """, {"run": run_id, "prev": previous[0][0], "table": table, "rows": limits["max_row_count_change"],
          "nulls": limits["max_null_rate_change"], "codes": limits["max_code_share_change"]}).fetchall()
    return Outcome(passed=not moved, observed={"compared_with_run": previous[0][0], "moved": len(moved)},
                   expected={k: v for k, v in limits.items() if k.startswith("max_")}, failing_rows=len(moved),
                   sample=[dict(zip(("metric", "column", "code", "before", "now"), m)) for m in moved])


def staging_drift(con: duckdb.DuckDBPyConnection, run_id: str, system: str, limits: dict) -> Outcome:
    """Profile the current rows of each of the system's history tables (row count, null
    shares, shares of every coded column) and compare with the previous run."""
    moved, compared = [], 0
    for table in load_contract(system).tables:
        name = f"history.{table_name(system, table)}"
        if not table_exists(con, name):
            continue
        coded = [c.name for c in table.columns if c.codes and not c.separator]
        profile_table(con, run_id, name, coded, where="is_current")
        outcome = drift(con, run_id, name, limits)
        compared += 1
        moved += [dict(m, table=name) for m in outcome.sample]
    return Outcome(passed=not moved, observed={"tables": compared, "moved": len(moved)},
                   expected={k: v for k, v in limits.items() if k.startswith("max_")},
                   failing_rows=len(moved), sample=moved)


def model_integrity(con: duckdb.DuckDBPyConnection) -> Outcome:
    """Every model table is unique at the grain its SQL header declares (read into
    assets/warehouse/model.py TABLE_GRAIN), and every fact's person_key and family_key
    exist in dim_person and dim_family."""
    problems, checked = [], 0
    for name, grain in TABLE_GRAIN.items():
        table, key = f"model.{name}", list(grain)
        if not table_exists(con, table):
            problems.append({"table": table, "problem": "missing"})
            continue
        checked += 1
        cols = ", ".join(f'"{c}"' for c in key)
        repeats = f"SELECT {cols} FROM {table} GROUP BY ALL HAVING count(*) > 1"
        repeated = con.sql(f"SELECT count(*) FROM ({repeats})").fetchall()[0][0]
        if repeated:
            sample = [dict(zip(key, map(str, row))) for row in con.sql(f"{repeats} ORDER BY ALL LIMIT 10").fetchall()]
            problems.append({"table": table, "problem": f"{repeated} repeated key(s) at grain {key}", "sample": sample})
    facts = con.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'model' "
                    "AND table_name LIKE 'fact_%' ORDER BY 1").fetchall()
    for (fact,) in facts:
        columns = set(con.sql(f"SELECT * FROM model.{fact} LIMIT 0").columns)
        for key, dim in (("person_key", "dim_person"), ("family_key", "dim_family")):
            if key not in columns:
                problems.append({"table": f"model.{fact}", "problem": f"no {key} column"})
                continue
            unknown = (f"SELECT DISTINCT f.{key} FROM model.{fact} f WHERE f.{key} IS NOT NULL AND NOT EXISTS "
                       f"(SELECT 1 FROM model.{dim} d WHERE d.{key} = f.{key})")
            orphans = con.sql(f"SELECT count(*) FROM model.{fact} f WHERE f.{key} IN ({unknown})").fetchall()[0][0]
            if orphans:
                sample = [k for (k,) in con.sql(f"{unknown} ORDER BY 1 LIMIT 10").fetchall()]
                problems.append({"table": f"model.{fact}", "problem": f"{orphans} {key}(s) not in model.{dim}",
                                 "sample": {key: sample}})
    return Outcome(passed=not problems, observed={"tables_checked": checked, "facts": len(facts),
                                                  "problems": len(problems)},
                   expected="unique at grain; every person_key and family_key known", failing_rows=len(problems),
                   sample=problems)


def features_integrity(con: duckdb.DuckDBPyConnection, sample_size: int = 10) -> Outcome:
    """features.child_month is unique per (person_key, as_of), holds every month-end of its
    window, covers on the last one every child of features.child_population (the one
    definition of who it covers) aged 0-17 and known by then, and has exactly one label
    row per row. A failure names a sample of the rows at fault."""
    problems = []
    for table in ("features.child_month", "features.child_month_label", "features.window",
                  "features.child_population"):
        if not table_exists(con, table):
            problems.append({"table": table, "problem": "missing"})
    if problems:
        return Outcome(passed=False, observed={"problems": len(problems)}, expected="the features tables exist",
                       failing_rows=len(problems), sample=problems)
    rows, months, expected_months = con.sql("""
        SELECT (SELECT count(*) FROM features.child_month), (SELECT count(DISTINCT as_of) FROM features.child_month),
               (SELECT date_diff('month', first_as_of, last_as_of) + 1 FROM features.window)""").fetchall()[0]
    findings = {
        "repeated (person_key, as_of)": """
            SELECT person_key, as_of::VARCHAR FROM features.child_month GROUP BY ALL HAVING count(*) > 1""",
        "children of features.child_population aged 0-17 and known on the last month-end without a row": """
            SELECT p.person_key, w.last_as_of::VARCHAR FROM features.child_population p, features.window w
            WHERE p.known_since <= w.last_as_of AND p.dob <= w.last_as_of AND w.last_as_of < p.dob + INTERVAL 18 YEAR
              AND NOT EXISTS (SELECT 1 FROM features.child_month c
                              WHERE c.person_key = p.person_key AND c.as_of = w.last_as_of)""",
        "rows of children outside features.child_population": """
            SELECT c.person_key, c.as_of::VARCHAR FROM features.child_month c
            ANTI JOIN features.child_population p USING (person_key)""",
        "rows without a label": """
            SELECT person_key, as_of::VARCHAR FROM features.child_month ANTI JOIN features.child_month_label
            USING (person_key, as_of)""",
        "labels without a row": """
            SELECT person_key, as_of::VARCHAR FROM features.child_month_label ANTI JOIN features.child_month
            USING (person_key, as_of)""",
    }
    failing = 0
    for problem, query in findings.items():
        count = con.sql(f"SELECT count(*) FROM ({query})").fetchall()[0][0]
        if count:
            failing += count
            keys = con.sql(f"SELECT * FROM ({query}) ORDER BY 1, 2 LIMIT {sample_size}").fetchall()
            problems.append({"table": "features.child_month", "problem": f"{count} {problem}",
                             "sample": [{"person_key": k, "as_of": a} for k, a in keys]})
    if months != expected_months:
        problems.append({"table": "features.child_month", "problem": f"{months} of {expected_months} month-ends present"})
        failing += 1
    return Outcome(passed=not problems, observed={"rows": rows, "month_ends": months, "problems": len(problems)},
                   expected="unique per child and month-end; every month-end; every child of features.child_population "
                            "known and aged 0-17 on the last; one label per row", failing_rows=failing, sample=problems)


# The same total counted two ways: a mart against the model it summarises.
MART_TOTALS = {
    "MASH contacts by month = contacts in the model":
        ("SELECT sum(contacts) FROM marts.mash_timeliness_monthly",
         "SELECT count(*) FROM model.fact_mash_contact"),
    "MASH contacts by source = contacts in the model":
        ("SELECT sum(referrals) FROM marts.referral_sources_monthly WHERE service = 'mash'",
         "SELECT count(*) FROM model.fact_mash_contact"),
    "early help referrals by source = referrals in the model":
        ("SELECT sum(referrals) FROM marts.referral_sources_monthly WHERE service = 'early_help'",
         "SELECT count(*) FROM model.fact_eh_referral"),
    "social care referrals by source = referrals in the model":
        ("SELECT sum(referrals) FROM marts.referral_sources_monthly WHERE service = 'social_care'",
         "SELECT count(*) FROM model.fact_csc_referral"),
    "episodes allocated by district and month = allocated episodes":
        ("SELECT sum(allocated) FROM marts.eh_waits_by_district_month",
         "SELECT count(*) FROM model.fact_eh_episode WHERE allocated_date IS NOT NULL"),
    "MASH contacts by district (UNKNOWN included) = contacts in the model":
        ("SELECT sum(mash_contacts) FROM marts.demand_by_district",
         "SELECT count(*) FROM model.fact_mash_contact"),
}


def mart_consistency(con: duckdb.DuckDBPyConnection) -> Outcome:
    """Each headline total agrees whether read from a mart or counted from the model."""
    disagree, compared = [], 0
    for name, (mart_sql, model_sql) in MART_TOTALS.items():
        try:
            mart = con.sql(mart_sql).fetchall()[0][0] or 0
            model = con.sql(model_sql).fetchall()[0][0] or 0
        except duckdb.Error as error:
            disagree.append({"total": name, "error": str(error).splitlines()[0]})
            continue
        compared += 1
        if mart != model:
            disagree.append({"total": name, "mart": mart, "model": model})
    return Outcome(passed=not disagree, observed={"totals_compared": compared, "disagreeing": len(disagree)},
                   expected="every total equal both ways", failing_rows=len(disagree), sample=disagree)
