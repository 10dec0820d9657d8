"""One process at a time: an exclusive advisory lock on a file, for steps that `dagster
dev` may run side by side (publishing, rebuilding the Data Docs site)."""

from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(path: Path):
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock across processes
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
