"""Fault injection for the reliability tests (tests/faults/): inert unless `TFXP_FAULT` is set.

`TFXP_FAULT=PLACE:FAULT` makes one `tfxp run` fail at one place, the way a crash or the OOM killer would:
- PLACE is a component id, and the fault strikes after its executor has written its outputs and before
  TFX publishes them to ML Metadata: the moment with the most half-finished state on disk. Or it is
  `push-copy`: in the middle of a push, once the version is copied into its hidden folder and before
  the rename that publishes it.
- FAULT is `raise` (an exception inside the component) or `kill` (SIGKILL to the whole process).

The variable is read when a run starts; it is not part of any cache key, so setting it changes
nothing TFX or the unchanged-run record compare.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

ENV = "TFXP_FAULT"
PUSH_COPY = "push-copy"
FAULTS = ("raise", "kill")


class InjectedFault(RuntimeError):
    """The exception `raise` injects."""


def _wanted() -> tuple[str, str] | None:
    """(place, fault) from the environment, or None when no fault is asked for."""
    value = os.environ.get(ENV, "")
    if not value:
        return None
    place, _, fault = value.rpartition(":")
    if not place or fault not in FAULTS:
        raise ValueError(f"{ENV} must be PLACE:{'|'.join(FAULTS)}, not {value!r}")
    return place, fault


def at(place: str) -> None:
    """Strikes the fault asked for, if it is asked for at `place`; otherwise does nothing."""
    wanted = _wanted()
    if wanted is None or wanted[0] != place:
        return
    if wanted[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"fault injected at {place} ({ENV})")


@contextlib.contextmanager
def in_components() -> Iterator[None]:
    """While a fault is asked for, strikes it in TFX's launcher right after a component's executor returns.

    TFX has no hook there, so the launcher's method is wrapped for the block and restored after it.
    """
    if _wanted() is None:
        yield
        return
    from tfx.orchestration.portable import launcher

    original = launcher.Launcher._run_executor

    def run_executor(self, execution_info):
        output = original(self, execution_info)
        at(self._pipeline_node.node_info.id)
        return output

    launcher.Launcher._run_executor = run_executor
    try:
        yield
    finally:
        launcher.Launcher._run_executor = original
