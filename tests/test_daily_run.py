"""Nothing new, nothing done: a build whose inputs have not changed since the last
successful run launches no Dagster run and leaves the serving files untouched, and every
kind of new input makes the step that reads it run again (assets/inputs.py).

Real builds through the CLI, on a tiny city, in child processes; the plan is also asked
directly after each kind of change, which costs no build.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import duckdb
import pytest

from assets import inputs
from assets.home import Home
from assets.publish import SECRET_ENV, serving_pair
from sources.drops import SYSTEMS, find_drops
from sources.synthetic.city import generate_city
from tests.faults.compare import differing_tables
from tests.faults.test_builds import TINY_CITY, audit_runs, dagster_statuses, run_build

NOTHING_NEW = "nothing new: every job's inputs as at its last successful run"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(landing, home): the tiny city built once from a fresh HOME."""
    root = tmp_path_factory.mktemp("daily")
    generate_city(TINY_CITY, root / "city")
    landing, home = root / "city" / "landing", root / "home"
    first = run_build(landing, home)
    assert first.returncode == 0, first.stderr[-3000:]
    return landing, home


def serving_state(home: Path) -> list[tuple]:
    return [(str(p), p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in serving_pair(home)]


def test_a_rerun_with_nothing_new_runs_nothing_and_leaves_the_serving_files_untouched(built):
    landing, home = built
    before, runs_before = serving_state(home), dagster_statuses(home)
    rerun = run_build(landing, home)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    systems = [s for s in SYSTEMS if find_drops(landing, (s,))]
    for system in systems:
        assert f"stage_{system}: up to date: inputs unchanged since run" in rerun.stdout
    assert "warehouse: up to date: inputs unchanged since run" in rerun.stdout
    assert "(up to date: untouched)" in rerun.stdout
    assert serving_state(home) == before
    assert dagster_statuses(home) == runs_before  # no Dagster run launched at all
    assert audit_runs(home)[-1] == ("success", NOTHING_NEW)


def test_every_kind_of_new_input_makes_its_step_stale(built, monkeypatch):
    landing, home = built
    assert inputs.plan(home, landing).nothing_new

    # a file of a drop rewritten (same manifest): that system's staging, then the warehouse
    drop = find_drops(landing, ("mash",))[-1]
    data_file = next(p for p in drop.folder.iterdir() if not p.name.startswith("_"))
    stat = data_file.stat()
    os.utime(data_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    todo = inputs.plan(home, landing)
    assert (todo.stale_systems, todo.warehouse_stale) == (["mash"], True)
    os.utime(data_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert inputs.plan(home, landing).nothing_new

    # a new drop folder
    new_drop = drop.folder.with_name("2025-12-01")
    shutil.copytree(drop.folder, new_drop)
    assert inputs.plan(home, landing).stale_systems == ["mash"]
    shutil.rmtree(new_drop)

    # a reviewer's decisions waiting to be imported: the warehouse only
    decisions = Home(home).review_decisions_dir
    decisions.mkdir(parents=True, exist_ok=True)
    (decisions / "batch1.csv").write_text("record_l,record_r,decision\na,b,match\n")
    todo = inputs.plan(home, landing)
    assert (todo.stale_systems, todo.warehouse_stale, todo.pending_decisions) == ([], True, ["batch1.csv"])
    (decisions / "batch1.csv").unlink()

    # a person model trained into the HOME
    model = Home(home).model_dir / "person_model_v99.json"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text("{}")
    assert inputs.plan(home, landing).warehouse_stale
    model.unlink()
    assert inputs.plan(home, landing).nothing_new

    # another pseudonymisation secret: every published key changes
    monkeypatch.setenv(SECRET_ENV, "another secret of at least thirty-two bytes, for the test")
    assert inputs.plan(home, landing).warehouse_stale
    monkeypatch.delenv(SECRET_ENV)

    # serving files gone
    identifiable, _ = serving_pair(home)
    aside = identifiable.with_name("moved-aside")
    identifiable.rename(aside)
    assert inputs.plan(home, landing).warehouse_stale
    aside.rename(identifiable)
    assert inputs.plan(home, landing).nothing_new


def test_the_code_fingerprint_follows_every_file_the_pipeline_runs(tmp_path):
    (tmp_path / "assets" / "marts").mkdir(parents=True)
    (tmp_path / "sources" / "synthetic").mkdir(parents=True)
    sql = tmp_path / "assets" / "marts" / "a.sql"
    sql.write_text("SELECT 1")
    first = inputs.code_fingerprint(tmp_path)
    (tmp_path / "sources" / "synthetic" / "world.py").write_text("x = 1")  # the generator is not the pipeline
    inputs.code_fingerprint.cache_clear()
    assert inputs.code_fingerprint(tmp_path) == first
    sql.write_text("SELECT 2")
    inputs.code_fingerprint.cache_clear()
    assert inputs.code_fingerprint(tmp_path) != first
    inputs.code_fingerprint.cache_clear()


def test_a_changed_drop_reruns_its_system_and_the_warehouse_to_the_same_tables(built, tmp_path):
    landing, home = built
    reference = tmp_path / "before.duckdb"
    shutil.copyfile(Home(home).build_db, reference)
    drop = find_drops(landing, ("mash",))[-1]
    data_file = next(p for p in drop.folder.iterdir() if not p.name.startswith("_"))
    os.utime(data_file)  # delivered again, same content

    again = run_build(landing, home)

    assert again.returncode == 0, again.stderr[-3000:]
    assert "stage_mash:" not in again.stdout and "stage_health: up to date" in again.stdout
    assert "(published)" in again.stdout
    assert differing_tables(reference, Home(home).build_db) == {}
    assert inputs.plan(home, landing).nothing_new


def test_a_build_killed_after_the_swap_is_not_taken_as_up_to_date(built):
    """The fingerprint is recorded after the serving pair is swapped in: a kill between
    the two leaves the warehouse stale, so the next build runs it again."""
    landing, home = built
    decisions = Home(home).review_decisions_dir
    decisions.mkdir(parents=True, exist_ok=True)
    (decisions / "empty.csv").write_text("record_l,record_r,decision\n")  # makes the warehouse stale

    killed = run_build(landing, home, kill_at="publish.after_swap")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not inputs.plan(home, landing).nothing_new  # the decision file was imported, the publish not recorded

    finished = run_build(landing, home)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "(published)" in finished.stdout
    with duckdb.connect(str(Home(home).build_db), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM identity.review_import WHERE file_name = 'empty.csv'").fetchall() == [(1,)]
    assert inputs.plan(home, landing).nothing_new


def test_a_landing_with_no_drops_is_refused_before_home_is_touched(tmp_path):
    (tmp_path / "landing" / "mash" / "2025-12-01").mkdir(parents=True)  # no manifest yet: still arriving
    refused = run_build(tmp_path / "landing", tmp_path / "home")
    assert refused.returncode == 2
    assert "no drops in" in refused.stderr and "nothing was done" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "home").exists()
