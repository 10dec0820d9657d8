"""One build at a time per HOME, and dead runs found out.

Every process that writes a HOME (``earlyhelp build``, a run launched from the Dagster UI,
a sensor's or schedule's run) holds ``HOME/.build.lock`` for as long as it runs. The lock
is an advisory ``flock``: the kernel drops it when its holder dies, however it dies, so a
killed build never locks a HOME for good. A second build either refuses at once
(``HomeBusy``; the CLI exits 3) or waits, saying who it waits for.

A holder also marks each Dagster run it executes alive: ``HOME/locks/runs/<run_id>`` is
locked by the run's process for the run's life. The first process to take the HOME lock
after a crash can then tell a dead run (its file can be locked: nobody holds it) from one
that is merely waiting for the HOME lock (its file is held), and mark only the dead ones
failed (``dead_runs``).

The lock is re-entrant within a process: ``earlyhelp build`` takes it, and the Dagster
runs it executes in the same process take it again without blocking themselves.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from assets.home import Home

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks across processes
    fcntl = None

POLL_SECONDS = 0.5


class HomeBusy(RuntimeError):
    """Another process is building this HOME."""


@dataclass
class Holding:
    """This process holds the HOME lock; ``outermost`` is False when it already held it."""
    path: Path
    outermost: bool


_held: dict[str, list] = {}  # lock path -> [open file, depth]
_guard = threading.Lock()


def lock_path(home: Path) -> Path:
    return Home(Path(home).resolve()).build_lock


def holder(home: Path) -> str:
    """Who holds the HOME lock, as its holder wrote it (pid, command, since when)."""
    try:
        info = json.loads(lock_path(home).read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    if not info:
        return "another process"
    return f"{info.get('command', 'a build')} (pid {info.get('pid')}, since {info.get('since')})"


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextmanager
def holding_home(home: Path, command: str, *, wait: bool = False, on_wait=None, timeout: float | None = None):
    """Hold HOME's build lock for the body. Busy: raise HomeBusy, or with ``wait`` call
    ``on_wait(holder)`` once and wait (up to ``timeout`` seconds, then HomeBusy)."""
    path = lock_path(home)
    key = str(path)
    with _guard:
        if key in _held:
            _held[key][1] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield Holding(path, outermost=False)
        finally:
            with _guard:
                _held[key][1] -= 1
        return
    if fcntl is None:  # pragma: no cover
        yield Holding(path, outermost=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        if not _try_lock(handle):
            if not wait:
                raise HomeBusy(f"{home} is being built by {holder(home)}: one build at a time per HOME")
            if on_wait:
                on_wait(holder(home))
            deadline = None if timeout is None else time.monotonic() + timeout
            while not _try_lock(handle):
                if deadline is not None and time.monotonic() > deadline:
                    raise HomeBusy(f"{home} is still being built by {holder(home)} after {timeout:.0f} s")
                time.sleep(POLL_SECONDS)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "command": command,
                                 "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
        handle.flush()
        with _guard:
            _held[key] = [handle, 1]
        try:
            yield Holding(path, outermost=True)
        finally:
            with _guard:
                del _held[key]
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def alive_dir(home: Path) -> Path:
    return Home(home).alive_dir


@contextmanager
def marked_alive(home: Path, run_id: str):
    """Hold ``HOME/locks/runs/<run_id>`` locked while the body runs. The file is locked
    before it gets its name, so nobody ever sees it named and unlocked while we live."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    folder = alive_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / run_id
    temporary = folder / f".{run_id}.{os.getpid()}"
    handle = open(temporary, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(str(os.getpid()))
        handle.flush()
        os.replace(temporary, final)
        try:
            yield
        finally:
            final.unlink(missing_ok=True)  # still locked: no one can take it for dead meanwhile
    finally:
        handle.close()
        temporary.unlink(missing_ok=True)


def dead_runs(home: Path, run_ids) -> list[str]:
    """Which of ``run_ids`` (runs their records say are in progress) died: each had its
    alive file locked, and that lock is free now. A run with no alive file is left
    alone: it has not reached its resources yet (or finished and cleaned up)."""
    dead = []
    for run_id in run_ids:
        path = alive_dir(home) / run_id
        try:
            handle = open(path, "r")
        except FileNotFoundError:
            continue
        with handle:
            if fcntl is not None and _try_lock(handle):
                dead.append(run_id)
                path.unlink(missing_ok=True)
    return dead
