"""Whole builds against each other and against kill -9, on a tiny city, through the CLI
in real child processes.

- Two builds on one HOME: the second refuses with exit code 3 and touches nothing, or,
  with ``--wait``, says whom it waits for and runs after the first.
- A build killed in identity: the next build marks the dead run failed, in audit.run
  and in Dagster, and finishes with every table as the uninterrupted build left it.

Staging and corrections are killed at the ingest level (tests/ingestion/test_crash_safety.py),
publishing at the publish level (tests/test_publish_atomic.py): cheaper, and as real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from quality.faults import KILL_ENV
from sources.synthetic.city import generate_city
from sources.synthetic.config import CityConfig
from tests.faults.compare import differing_tables

REPO = Path(__file__).resolve().parents[2]
TINY_CITY = CityConfig(children=300, seed=3, start=date(2024, 1, 1), end=date(2025, 11, 30),
                       go_live=date(2025, 10, 13))


def build_command(landing: Path, home: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "build", "--landing", str(landing), "--home", str(home), *extra]


def run_build(landing: Path, home: Path, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill_at:
        env[KILL_ENV] = kill_at
    return subprocess.run(build_command(landing, home, *extra), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)


def wait_for_lock_holder(home: Path, pid: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            holder = json.loads((home / ".build.lock").read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        if holder.get("pid") == pid:
            return holder
        time.sleep(0.1)
    raise AssertionError(f"build {pid} never took the HOME lock")


def audit_runs(home: Path) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse" / "build.duckdb"), read_only=True) as con:
        return con.execute("SELECT status, detail FROM audit.run ORDER BY started_at").fetchall()


def dagster_statuses(home: Path) -> list[str]:
    with pytest.MonkeyPatch.context() as patch:  # the instance's dagster.yaml reads DAGSTER_HOME
        patch.setenv("DAGSTER_HOME", str(home / "dagster"))
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        try:
            return [r.status.value for r in instance.get_runs()]
        finally:
            instance.dispose()


@pytest.fixture(scope="module")
def tiny_city(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_city")
    generate_city(TINY_CITY, out)
    return out / "landing"


@pytest.fixture(scope="module")
def concurrent_builds(tiny_city, tmp_path_factory) -> dict:
    """Build A runs; meanwhile B (no --wait) is refused and C (--wait) queues behind A."""
    home = tmp_path_factory.mktemp("shared") / "home"
    first = subprocess.Popen(build_command(tiny_city, home), cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    holder = wait_for_lock_holder(home, first.pid)
    refused = run_build(tiny_city, home)
    queued = subprocess.Popen(build_command(tiny_city, home, "--wait"), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    first_out, first_err = first.communicate(timeout=900)
    queued_out, queued_err = queued.communicate(timeout=900)
    return {"home": home, "holder": holder, "first": (first.returncode, first_out, first_err),
            "refused": refused, "queued": (queued.returncode, queued_out, queued_err)}


def test_a_second_build_on_a_busy_home_refuses_with_exit_code_3(concurrent_builds):
    refused, holder = concurrent_builds["refused"], concurrent_builds["holder"]
    assert refused.returncode == 3, refused.stderr[-2000:]
    assert f"is being built by earlyhelp build (pid {holder['pid']}, since {holder['since']})" in refused.stderr
    assert "nothing was done" in refused.stderr
    assert concurrent_builds["first"][0] == 0, concurrent_builds["first"][2][-3000:]


def test_a_build_told_to_wait_says_whom_for_and_runs_after(concurrent_builds):
    code, out, err = concurrent_builds["queued"]
    holder = concurrent_builds["holder"]
    assert code == 0, err[-3000:]
    assert f"waiting for earlyhelp build (pid {holder['pid']}" in err
    # it ran after the first, on the same landing, so found nothing new to do
    assert "(up to date: untouched)" in out
    # two builds ran, one after the other, and the refused one left no trace
    assert audit_runs(concurrent_builds["home"]) == [
        ("success", None), ("success", "nothing new: every job's inputs as at its last successful run")]


@pytest.mark.parametrize("point", ["identity.linked"])
def test_a_build_killed_mid_run_is_marked_failed_and_the_next_finishes_the_job(concurrent_builds, tiny_city,
                                                                               tmp_path, point):
    home = tmp_path / "home"
    killed = run_build(tiny_city, home, kill_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert audit_runs(home) == [("running", None)]
    assert "STARTED" in dagster_statuses(home)
    assert not (home / "warehouse" / "analytics.duckdb").exists()

    finished = run_build(tiny_city, home)

    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "found dead and marked failed: 1 build(s) in audit.run, 1 Dagster run(s)" in finished.stdout
    assert audit_runs(home) == [
        ("failed", "the process died before the run finished (found by the next build)"), ("success", None)]
    statuses = dagster_statuses(home)
    assert "STARTED" not in statuses and statuses.count("FAILURE") == 1
    assert differing_tables(home / "warehouse" / "build.duckdb",
                            concurrent_builds["home"] / "warehouse" / "build.duckdb") == {}


def test_the_jobs_launched_as_the_ui_launches_them_make_the_same_home_as_earlyhelp_build(
        concurrent_builds, tiny_city, tmp_path, monkeypatch):
    """Not through the CLI: register the drops as the sensor does, then run each
    stage_<system> job and the warehouse job from the Definitions, one run each."""
    from assets.resources import Warehouse
    from pipelines.build import QUIET, dagster_instance
    from pipelines.definitions import defs
    from pipelines.sensors import requests_for_new_drops

    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    warehouse = Warehouse(home=str(home), landing=str(tiny_city))
    instance = dagster_instance(home)
    requests = requests_for_new_drops(instance, warehouse)
    for job_name in dict.fromkeys(r.job_name for r in requests):
        keys = sorted(r.partition_key for r in requests if r.job_name == job_name)
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, resources={"warehouse": warehouse}, run_config=QUIET,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]})
        assert result.success, job_name
    result = defs.resolve_job_def("warehouse").execute_in_process(
        instance=instance, resources={"warehouse": warehouse}, run_config=QUIET)
    assert result.success

    assert differing_tables(home / "warehouse" / "build.duckdb",
                            concurrent_builds["home"] / "warehouse" / "build.duckdb") == {}
    with duckdb.connect(str(home / "warehouse" / "analytics.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(*) FILTER (WHERE status = 'success') FROM audit.run").fetchall() \
            == [(7, 7)]  # one row per run: six staging runs and the warehouse run, each finished
    assert (home / "reports" / "quality" / "index.html").exists()
