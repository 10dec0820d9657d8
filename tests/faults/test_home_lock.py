"""One build at a time per HOME (quality/home_lock.py), for runs launched the way the
Dagster UI and the sensor launch them: a run of an asset with the Warehouse resource,
not `earlyhelp build`. Other processes are real child processes; kills are SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from quality.home_lock import HomeBusy, dead_runs, holding_home, marked_alive
from quality.faults import KILL_ENV

REPO = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from quality.home_lock import holding_home, marked_alive
    home, seconds = Path(sys.argv[1]), float(sys.argv[2])
    with marked_alive(home, "run-of-the-holder"), holding_home(home, "a test holder"):
        print("holding", flush=True)
        time.sleep(seconds)
""")

STAGE_REFERENCE = textwrap.dedent("""
    import sys
    import dagster as dg
    from assets.staging import drop_partitions
    from pipelines.build import QUIET, dagster_instance
    from assets.resources import Warehouse
    from pipelines.jobs import ASSET_OF
    from pathlib import Path
    home, landing = Path(sys.argv[1]), sys.argv[2]
    instance = dagster_instance(home)
    name = drop_partitions("reference").name
    dates = sorted(p.name for p in Path(landing, "reference").iterdir())
    instance.add_dynamic_partitions(name, dates)
    result = dg.materialize([ASSET_OF["reference"]], instance=instance, raise_on_error=False, run_config=QUIET,
                            resources={"warehouse": Warehouse(home=str(home), landing=landing)},
                            tags={"dagster/asset_partition_range_start": dates[0],
                                  "dagster/asset_partition_range_end": dates[-1]})
    print(result.run_id, result.success, flush=True)
""")


def hold_in_child(home: Path, seconds: float) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(home), str(seconds)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "holding"
    return child


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    home = tmp_path / "home"
    child = hold_in_child(home, 60)
    try:
        with pytest.raises(HomeBusy, match=rf"being built by a test holder \(pid {child.pid}, since "):
            with holding_home(home, "second"):
                pass
        assert dead_runs(home, ["run-of-the-holder"]) == []  # alive: its file is held
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with holding_home(home, "second") as holding:  # the kernel let go of the dead holder's lock
        assert holding.outermost
        with holding_home(home, "the same process again") as again:  # re-entrant, not self-blocking
            assert not again.outermost
    assert dead_runs(home, ["run-of-the-holder", "never-ran"]) == ["run-of-the-holder"]
    assert dead_runs(home, ["run-of-the-holder"]) == []  # found once


def test_an_alive_mark_is_never_seen_unheld(tmp_path):
    with marked_alive(tmp_path, "r1"):
        assert dead_runs(tmp_path, ["r1"]) == []
        assert [p.name for p in (tmp_path / "locks" / "runs").iterdir()] == ["r1"]
    assert list((tmp_path / "locks" / "runs").iterdir()) == []  # a finished run leaves nothing


def test_a_run_waits_for_a_build_that_holds_the_home(small_city, tmp_path):
    from pipelines.build import QUIET
    from pipelines.definitions import defs
    from pipelines.jobs import staging_job_name
    from assets.resources import Warehouse

    home, landing = tmp_path / "home", small_city[0] / "landing"
    instance = dg.DagsterInstance.ephemeral()
    dates = sorted(p.name for p in (landing / "reference").iterdir())
    instance.add_dynamic_partitions("reference_drops", dates)
    child = hold_in_child(home, 3)
    started = time.monotonic()
    job = defs.resolve_job_def(staging_job_name("reference"))  # as the UI launches it
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET,
                                    resources={"warehouse": Warehouse(home=str(home), landing=str(landing))},
                                    partition_key=dates[0])
    waited = time.monotonic() - started
    child.wait()
    assert result.success
    assert waited >= 2.5  # it ran only once the holder let go
    messages = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any(f"waiting for a test holder (pid {child.pid}" in m for m in messages)
    # a run not launched by `earlyhelp build` still gets what a build gets
    with duckdb.connect(str(home / "warehouse" / "build.duckdb"), read_only=True) as con:
        assert con.execute("SELECT run_id, command, status FROM audit.run").fetchall() == [
            (result.run_id, f"dagster run: {result.job_def.name}", "success")]
        assert con.execute("SELECT count(*) FROM audit.check_result WHERE run_id = ?",
                           [result.run_id]).fetchall()[0][0] > 0
    assert (home / "reports" / "quality" / "index.html").exists()


def test_a_killed_run_is_marked_failed_by_the_next_holder(small_city, tmp_path, monkeypatch):
    from pipelines.build import dagster_instance
    from assets.resources import Warehouse, recover_dead_runs

    home, landing = tmp_path / "home", small_city[0] / "landing"
    env = {**os.environ, KILL_ENV: "staging.begin"}
    child = subprocess.run([sys.executable, "-c", STAGE_REFERENCE, str(home), str(landing)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    instance = dagster_instance(home)
    [run] = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.STARTED

    with holding_home(home, "the next build"):
        found = recover_dead_runs(Warehouse(home=str(home), landing=str(landing)), instance)

    assert found == {"dagster": [run.run_id], "audit": [run.run_id]}  # its audit.run row too
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    child = subprocess.run([sys.executable, "-c", STAGE_REFERENCE, str(home), str(landing)], cwd=REPO,
                           env={k: v for k, v in os.environ.items() if k != KILL_ENV},
                           capture_output=True, text=True, timeout=300)
    assert child.stdout.split()[-1] == "True", child.stderr[-2000:]


def test_a_dagster_run_creates_what_it_writes_under_home_for_its_owner_only(small_city, tmp_path):
    """Runs from the UI or a sensor do not pass through `earlyhelp build`, which sets the
    umask: the resource does it for them."""
    from pipelines.build import QUIET
    from assets.resources import Warehouse
    from pipelines.jobs import ASSET_OF

    home, landing = tmp_path / "home", small_city[0] / "landing"
    instance = dg.DagsterInstance.ephemeral()
    dates = sorted(p.name for p in (landing / "mash").iterdir())[:2]
    instance.add_dynamic_partitions("mash_drops", dates)
    previous = os.umask(0o022)  # what a service account's shell usually has
    try:
        result = dg.materialize([ASSET_OF["mash"]], instance=instance, run_config=QUIET, partition_key=dates[0],
                                resources={"warehouse": Warehouse(home=str(home), landing=str(landing))})
    finally:
        os.umask(previous)
    assert result.success
    created = [p for p in home.rglob("*")]
    assert any(p.suffix == ".parquet" for p in created) and (home / "warehouse" / "build.duckdb") in created
    loose = {str(p.relative_to(home)): oct(p.stat().st_mode & 0o777) for p in created
             if p.stat().st_mode & 0o077}
    assert loose == {}
