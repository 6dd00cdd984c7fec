"""`rag-autotune tune [--wait]`: start a run now and, with --wait, follow it step by step."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ArtifactNotFound
from ..ports import ArtifactStore
from .runs import TERMINAL, new_run_id, read_run

EXIT_CODES = {"SWAPPED": 0, "REJECTED": 3, "SKIPPED": 3, "FAILED": 1}


class Launcher(Protocol):
    def start(self, run_id: str, trigger: str = "cli") -> str: ...

    def status(self, execution_arn: str) -> str: ...


def start(launcher: Launcher, trigger: str = "cli") -> tuple[str, str]:
    run_id = new_run_id()
    return run_id, launcher.start(run_id, trigger)


def follow(
    launcher: Launcher,
    store: ArtifactStore,
    run_id: str,
    execution_arn: str,
    on_change: Callable[[dict[str, Any]], None],
    poll_s: float = 1.0,
    timeout_s: float = 3600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll the run record (written by every step) until the run ends; report each change of step/status.
    The execution's own status covers a run that died before Prepare could write a record."""
    deadline = time.monotonic() + timeout_s
    seen: tuple[Any, ...] = ()
    while True:
        try:
            record = read_run(store, run_id)
        except ArtifactNotFound:
            record = {"run_id": run_id, "status": "STARTING"}
        key = (record.get("status"), record.get("step"))
        if key != seen:
            seen = key
            on_change(record)
        execution = launcher.status(execution_arn)
        if record.get("status") in TERMINAL and execution != "RUNNING":
            return record
        if execution != "RUNNING" and record.get("status") not in TERMINAL:
            # The workflow ended without a final record (e.g. the lock was refused before one was written).
            return {**record, "status": "FAILED", "reason": record.get("reason") or f"execution {execution}"}
        if time.monotonic() > deadline:
            return {**record, "status": "FAILED", "reason": f"still running after {timeout_s:.0f} s"}
        sleep(poll_s)
