"""`rag-autotune tune [--wait]`: start a run now and, with --wait, follow it step by step."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ArtifactNotFound
from ..ports import ArtifactStore
from .runs import TERMINAL, new_run_id, read_progress, read_run

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
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll the run record until the run ends; report each change of status or current step (every step
    records itself when it starts) to `on_change`, and, while a step runs, each new progress object of that
    step ({"step", "done", "total", "unit"}) to `on_progress`. The execution's own status covers a run that
    died before Prepare could write a record."""
    deadline = clock() + timeout_s
    seen: tuple[Any, ...] = ()
    seen_progress: dict[str, Any] | None = None
    while True:
        try:
            record = read_run(store, run_id)
        except ArtifactNotFound:
            record = {"run_id": run_id, "status": "STARTING"}
        key = (record.get("status"), record.get("step"))
        if key != seen:
            seen = key
            on_change(record)
        if on_progress is not None and record.get("status") == "RUNNING":
            progress = read_progress(store, run_id)
            # a step's progress object may still be the previous step's until the new one first writes it
            if progress and progress.get("step") == record.get("step") and progress != seen_progress:
                seen_progress = progress
                on_progress(progress)
        execution = launcher.status(execution_arn)
        if record.get("status") in TERMINAL and execution != "RUNNING":
            return record
        if execution != "RUNNING" and record.get("status") not in TERMINAL:
            # The workflow ended without a final record (e.g. the lock was refused before one was written).
            return {**record, "status": "FAILED", "reason": record.get("reason") or f"execution {execution}"}
        if clock() > deadline:
            return {**record, "status": "FAILED", "reason": f"still running after {timeout_s:.0f} s"}
        sleep(poll_s)
