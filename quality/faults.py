"""Named fault points, for the fault-injection tests (tests/faults/).

A crash-safety claim ("kill -9 at any point leaves staging consistent") is only as good
as the kills it was tried with. The steps that matter call ``fault_point("name")``;
with ``EARLYHELP_KILL_AT=name`` in its environment the process SIGKILLs itself there,
as an operator's ``kill -9`` or the OOM killer would: no clean-up, no ``finally``, no
flush. ``name@N`` kills on the Nth time the point is reached. ``EARLYHELP_FAIL_AT=name``
raises ``FaultInjected`` there instead: an ordinary failure, which clean-up code sees.
Unset (always, outside the tests), a fault point costs two dictionary lookups; no public
function takes a test-only argument for it.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager

KILL_ENV = "EARLYHELP_KILL_AT"
FAIL_ENV = "EARLYHELP_FAIL_AT"
_reached: dict[str, int] = {}


class FaultInjected(RuntimeError):
    """Raised at the fault point EARLYHELP_FAIL_AT names."""


def fault_point(name: str) -> None:
    if os.environ.get(FAIL_ENV) == name:
        raise FaultInjected(f"failure injected at {name} ({FAIL_ENV})")
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def fail_at(name: str):
    """In this process, make the fault point ``name`` raise FaultInjected while the body runs."""
    previous = os.environ.get(FAIL_ENV)
    os.environ[FAIL_ENV] = name
    try:
        yield
    finally:
        if previous is None:
            del os.environ[FAIL_ENV]
        else:
            os.environ[FAIL_ENV] = previous
