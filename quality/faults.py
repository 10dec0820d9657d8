"""Named fault points, for the fault-injection tests (tests/faults/).

A crash-safety claim ("kill -9 at any point leaves staging consistent") is only as good
as the kills it was tried with. The steps that matter call ``fault_point("name")``;
with ``EARLYHELP_KILL_AT=name`` in its environment the process SIGKILLs itself there,
as an operator's ``kill -9`` or the OOM killer would: no clean-up, no ``finally``, no
flush. ``name@N`` kills on the Nth time the point is reached. Unset (always, outside
the tests), a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "EARLYHELP_KILL_AT"
_reached: dict[str, int] = {}


def fault_point(name: str) -> None:
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
