"""The serving pair swaps as a pair: real DuckDB files, real child processes, real SIGKILL.

A publish runs in a child process that kills itself (SIGKILL: no finally, no atexit) at a
named step (fault point ``publish.<step>``, quality/faults.py) or right after its k-th rename (``os.replace``
wrapped in the child only, so the kill lands between the renames whatever the code does).
After each kill, the pair a reader finds (through the published names and through
``serving_pair``) is byte-identical to the pair before, or both files are the new build's;
the next publish removes what the killed one left, and succeeds.

The build database is tests/test_publish.py's hand-made one: ``contacts`` rows in
model.fact_mash_contact mark which build a serving file came from (4 before, 9 after).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from tests.test_publish import SECRET, make_build

REPO = Path(__file__).resolve().parents[1]
NAMES = ("identifiable.duckdb", "analytics.duckdb")

CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    build, warehouse, secret, kill_at, kill_after_renames, umask = sys.argv[1:7]
    os.umask(int(umask, 8))
    if kill_after_renames:
        real_replace, done = os.replace, [0]
        def replace(*args, **kwargs):
            real_replace(*args, **kwargs)
            done[0] += 1
            if done[0] == int(kill_after_renames):
                os.kill(os.getpid(), signal.SIGKILL)
        os.replace = replace
    if kill_at:
        os.environ["EARLYHELP_KILL_AT"] = "publish." + kill_at  # quality/faults.py
    from assets.publish import publish
    publish(Path(build), Path(warehouse), secret)
""")


def publish_in_child(build: Path, wh: Path, *, kill_at: str = "", kill_after_renames: int = 0,
                     umask: int = 0o077) -> int:
    """Run one publish in a new process; its return code (-9 when it killed itself)."""
    return subprocess.run([sys.executable, "-c", CHILD, str(build), str(wh), SECRET, kill_at,
                           str(kill_after_renames or ""), f"{umask:o}"], cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)}).returncode


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def contacts(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT count(*) FROM model.fact_mash_contact").fetchone()[0]


def pair_state(paths) -> tuple:
    """(sha256 of each file, contact count of each file) of one pair."""
    return tuple(sha256(p) for p in paths), tuple(contacts(p) for p in paths)


def through_names(wh: Path) -> tuple:
    """The pair as a reader opening the published names finds it."""
    return pair_state([wh / n for n in NAMES])


def through_pointer(wh: Path) -> tuple:
    from assets.publish import serving_pair  # imported here: the name-level checks run without it
    return pair_state(serving_pair(wh.parent))


def generations(wh: Path) -> set[str]:
    root = wh / "generations"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def pointed(wh: Path) -> set[str]:
    """The generations `current` and `previous` name."""
    return {Path(os.readlink(wh / p)).name for p in ("current", "previous") if (wh / p).is_symlink()}


@pytest.fixture(params=["generations", "plain"])
def home(request, tmp_path, monkeypatch):
    """A HOME published once from a build of 4 contacts, then rebuilt with 9: as this code
    publishes it ("generations"), or as the code before generations left it ("plain"
    files at the two names, which the next publish must convert)."""
    monkeypatch.delenv("EARLYHELP_PSEUDONYM_KEY", raising=False)
    build = make_build(tmp_path / "warehouse" / "build.duckdb", tmp_path / "reports", contacts=4)
    wh = tmp_path / "warehouse"
    if request.param == "generations":
        assert publish_in_child(build, wh) == 0
    else:
        scratch = tmp_path / "scratch" / "warehouse"
        assert publish_in_child(build, scratch) == 0
        for name in NAMES:
            shutil.copyfile(scratch / name, wh / name)  # follows the links: plain files
            (wh / name).chmod(0o600)
        shutil.rmtree(tmp_path / "scratch")
    make_build(build, tmp_path / "reports", contacts=9)
    return request.param, build, wh


@pytest.mark.parametrize("renames", [1, 2, 3, 4, 5, 6])
def test_a_kill_after_any_rename_leaves_the_old_pair_or_the_new_pair(home, renames):
    """A plain HOME takes 5 renames (current, two names, previous, current), one published
    with generations 2; a count past the last means no kill: the new pair."""
    layout, build, wh = home
    before = through_names(wh)
    assert before[1] == (4, 4)
    code = publish_in_child(build, wh, kill_after_renames=renames)
    after = through_names(wh)
    assert after == before or after[1] == (9, 9), f"a mixed pair after rename {renames}: {after[1]}"
    assert (code == -9) == (renames <= (5 if layout == "plain" else 2))
    assert through_pointer(wh) == after
    assert publish_in_child(build, wh) == 0  # the next publish finishes or undoes the killed one
    assert through_names(wh)[1] == (9, 9) and through_pointer(wh) == through_names(wh)


STEPS = [("identifiable_written", "old"), ("analytics_written", "old"), ("before_swap", "old"),
         ("after_swap", "new")]


@pytest.mark.parametrize("step, outcome", STEPS, ids=[s for s, _ in STEPS])
def test_a_kill_at_each_step_then_the_next_publish_cleans_up_and_succeeds(home, step, outcome):
    kill_then_recover(home, step, outcome)


@pytest.mark.parametrize("home", ["plain"], indirect=True)
@pytest.mark.parametrize("step", ["migration_linked", "migration_one_name"])
def test_a_kill_while_a_plain_home_is_converted_changes_nothing_readers_see(home, step):
    kill_then_recover(home, step, "old")


def kill_then_recover(home, step: str, outcome: str) -> None:
    from assets.publish import publish
    from quality.faults import FaultInjected, fail_at
    layout, build, wh = home
    before, known = through_names(wh), generations(wh)
    assert publish_in_child(build, wh, kill_at=step) == -9
    after = through_names(wh)
    if outcome == "old":
        assert after == before  # byte-identical
    else:
        assert after[1] == (9, 9) and after[0] != before[0]  # both files new
    assert through_pointer(wh) == after
    left = generations(wh) - known - pointed(wh)  # what the killed publish wrote and never swapped in
    if outcome == "old" and not step.startswith("migration"):
        assert left, "the killed publish left its generation (SIGKILL skips its finally)"
    # the next publish starts by removing what no pointer names; here it then fails on purpose
    with fail_at("publish.before_swap"), pytest.raises(FaultInjected):
        publish(build, wh, SECRET)
    assert generations(wh) == pointed(wh), "a generation no pointer names survived, or the failed one did"
    assert not left & generations(wh)
    assert through_names(wh) == after
    result = publish(build, wh, SECRET)
    assert through_names(wh)[1] == (9, 9) and through_pointer(wh) == through_names(wh)
    assert Path(result["generation"]).name == Path(os.readlink(wh / "current")).name
    assert len(generations(wh)) == 2  # current, and previous for readers that have it open
    assert not [p.name for p in wh.iterdir() if p.name.endswith((".new", ".partial", ".wal", ".previous"))]


def test_modes_are_owner_only_whatever_the_umask(home):
    layout, build, wh = home
    assert publish_in_child(build, wh, umask=0o022) == 0
    identifiable, analytics = (wh / n for n in NAMES)
    assert stat.S_IMODE(identifiable.stat().st_mode) == 0o600
    assert stat.S_IMODE(analytics.stat().st_mode) == 0o600
    folders = [wh / "generations", *(wh / "generations").iterdir()]
    assert {stat.S_IMODE(f.stat().st_mode) for f in folders} == {0o700}
    assert all((wh / n).is_symlink() and os.readlink(wh / n) == f"current/{n}" for n in NAMES)


READER = textwrap.dedent("""
    import sys, duckdb
    from assets.publish import serving_pair
    identifiable, analytics = serving_pair(sys.argv[1])
    con = duckdb.connect(str(analytics), read_only=True)
    sql = "SELECT count(*) FROM model.fact_mash_contact"
    print(analytics.parent.name, con.execute(sql).fetchone()[0], flush=True)
    for line in sys.stdin:
        print(con.execute(sql).fetchone()[0], flush=True)
""")


def test_a_reader_keeps_its_pair_and_its_folder_for_one_more_publish(home, tmp_path):
    """DuckDB resolves the links and keeps a reader's spill folder (<file>.tmp) in the
    generation folder, so the reader's generation is kept while it is `previous`."""
    layout, build, wh = home
    assert publish_in_child(build, wh) == 0  # 9 contacts, in a generation
    reader = subprocess.Popen([sys.executable, "-c", READER, str(wh.parent)], cwd=REPO, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        generation, count = reader.stdout.readline().split()
        assert count == "9"
        for contacts_now, kept in ((5, True), (6, False)):
            make_build(build, tmp_path / "reports", contacts=contacts_now)
            assert publish_in_child(build, wh) == 0
            assert through_names(wh)[1] == (contacts_now, contacts_now)
            assert (generation in generations(wh)) == kept
            reader.stdin.write("again\n")
            reader.stdin.flush()
            assert reader.stdout.readline().strip() == "9"  # still its own whole file
    finally:
        reader.kill()
        reader.wait()


WRITER = textwrap.dedent("""
    import os, signal, sys, duckdb
    con = duckdb.connect(sys.argv[1])
    con.execute("SET checkpoint_threshold = '1TB'")
    con.execute("DELETE FROM model.fact_mash_contact")
    os.kill(os.getpid(), signal.SIGKILL)  # the delete is only in the WAL
""")


def test_a_stale_wal_is_never_applied_to_a_new_generation(home):
    """Someone opened a serving file read-write and was killed: the WAL (beside the
    resolved file; an older DuckDB or a plain file had it beside the name) must not be
    replayed over what the next publish swaps in."""
    layout, build, wh = home
    target = wh / "analytics.duckdb"
    assert subprocess.run([sys.executable, "-c", WRITER, str(target)]).returncode == -9
    wals = list(wh.rglob("*.wal"))
    assert wals, "the killed writer left a WAL"
    shutil.copyfile(wals[0], wh / "identifiable.duckdb.wal")  # and one beside the other name
    assert publish_in_child(build, wh) == 0
    assert through_names(wh)[1] == (9, 9)
    assert not list(wh.glob("*.wal"))
    from assets.publish import serving_pair
    assert not [p for p in serving_pair(wh.parent)[0].parent.iterdir() if p.suffix == ".wal"]
