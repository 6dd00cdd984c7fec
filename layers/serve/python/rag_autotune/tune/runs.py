"""Run records (runs/<id>/run.json), their progress (runs/<id>/progress.json) and the run lock (tune/lock.json),
all in the artifact store.

The lock is a create-only conditional write, so two starts cannot both take it. A lock older than
`stale_after_s` (a run killed without cleanup) may be taken over, again by a conditional write.

Each step records itself as the run's `step` when it starts (`step_started`) and again, with its seconds,
when it finishes (`record_step`). A long step's progress (train: optimizer steps, embed: chunks) goes to its
own small object, written blind (no read) at most every few seconds: the steps run in other Lambdas, so
`tune --wait` and Cleanup learn how far a step got only from there. It is a separate object so that a step
the workflow already timed out cannot overwrite the run record Cleanup wrote. Both writes are best effort:
a step never fails because its progress could not be recorded."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..errors import ArtifactNotFound, ConflictError, RagError
from ..observability import logger
from ..ports import ArtifactStore

LOCK_KEY = "tune/lock.json"
TERMINAL = ("SWAPPED", "REJECTED", "SKIPPED", "FAILED")


class RunLocked(RagError):
    """Another tune run holds the lock (the ASL routes this name to a fast Fail)."""

    code = "run_locked"


def new_run_id(now: float | None = None) -> str:
    stamp = datetime.fromtimestamp(now if now is not None else time.time(), UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(2)}"


def run_key(run_id: str) -> str:
    return f"runs/{run_id}/run.json"


def acquire_lock(store: ArtifactStore, run_id: str, now: float, stale_after_s: float = 7200) -> None:
    body = json.dumps({"run_id": run_id, "acquired_at": now}).encode()
    try:
        store.put_if(LOCK_KEY, body, None)
        return
    except ConflictError:
        pass
    try:
        data, etag = store.get_with_etag(LOCK_KEY)
    except ArtifactNotFound:  # released meanwhile: one more create-only try
        try:
            store.put_if(LOCK_KEY, body, None)
            return
        except ConflictError as exc:
            raise RunLocked("another run took the lock") from exc
    holder = json.loads(data)
    if holder.get("run_id") == run_id:
        return  # a retried Prepare of the same run
    if now - float(holder.get("acquired_at", 0)) < stale_after_s:
        raise RunLocked(f"run {holder.get('run_id')} is in progress")
    try:
        store.put_if(LOCK_KEY, body, etag)
    except ConflictError as exc:
        raise RunLocked("another run took over the stale lock first") from exc


def release_lock(store: ArtifactStore, run_id: str) -> None:
    """Only the holder releases."""
    try:
        holder = json.loads(store.get_bytes(LOCK_KEY))
    except ArtifactNotFound:
        return
    if holder.get("run_id") == run_id:
        store.delete_prefix(LOCK_KEY)


def read_run(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    return dict(json.loads(store.get_bytes(run_key(run_id))))


def write_run(store: ArtifactStore, record: dict[str, Any]) -> None:
    store.put_bytes(run_key(record["run_id"]), json.dumps(record, indent=2).encode(), "application/json")


def _read_or_new(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    try:
        return read_run(store, run_id)
    except ArtifactNotFound:
        return {"run_id": run_id}


def update_run(store: ArtifactStore, run_id: str, **fields: Any) -> dict[str, Any]:
    record = _read_or_new(store, run_id)
    record.update(fields)
    write_run(store, record)
    return record


def record_step(store: ArtifactStore, run_id: str, step: str, seconds: float, **fields: Any) -> None:
    """Step `step` finished after `seconds`: one read and one write of the run record."""
    record = _read_or_new(store, run_id)
    if record.get("status") in TERMINAL:  # the workflow timed this step out and Cleanup recorded the outcome
        logger.warning("step finished after its run ended", extra={"run_id": run_id, "step": step})
        return
    record.setdefault("steps", {})[step] = {"seconds": seconds}
    record.update(step=step, **fields)
    write_run(store, record)


def step_started(store: ArtifactStore, run_id: str, step: str, now: float) -> None:
    """Step `step` starts: it becomes the run's current step. Best effort (one read, one write)."""
    try:
        record = _read_or_new(store, run_id)
        if record.get("status") in TERMINAL:
            logger.warning("step started after its run ended", extra={"run_id": run_id, "step": step})
            return
        record.update(step=step, step_started_at=now)
        write_run(store, record)
    except Exception as exc:  # recording where a run is must never fail the run
        logger.warning("could not record the step's start", extra={"run_id": run_id, "step": step, "error": str(exc)})


def progress_key(run_id: str) -> str:
    return f"runs/{run_id}/progress.json"


def read_progress(store: ArtifactStore, run_id: str) -> dict[str, Any] | None:
    """The last progress a step wrote for this run, or None."""
    try:
        data = json.loads(store.get_bytes(progress_key(run_id)))
    except (ArtifactNotFound, ValueError):
        return None
    return data if isinstance(data, dict) else None


def progress_text(progress: Mapping[str, Any]) -> str:
    """ "step 27/53", "chunk 300/1200": how far a step got, in its own unit."""
    return f"{progress.get('unit', 'item')} {progress.get('done', 0)}/{progress.get('total', 0)}"


class ProgressWriter:
    """`(done, total)` callback of a long step → runs/<id>/progress.json, at most once every `every_s` seconds
    by `clock` (and always for the first and the last call). Blind writes; failures are logged, never raised."""

    def __init__(
        self,
        store: ArtifactStore,
        run_id: str,
        step: str,
        unit: str,
        clock: Callable[[], float] = time.time,
        every_s: float = 5.0,
    ) -> None:
        self.store, self.run_id, self.step, self.unit = store, run_id, step, unit
        self.clock, self.every_s = clock, every_s
        self._last: float | None = None

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        final = total > 0 and done >= total
        if self._last is not None and now - self._last < self.every_s and not final:
            return
        self._last = now
        body = {"step": self.step, "done": int(done), "total": int(total), "unit": self.unit, "at": now}
        try:
            self.store.put_bytes(progress_key(self.run_id), json.dumps(body).encode(), "application/json")
        except Exception as exc:  # progress is for people watching: the step goes on
            logger.warning("could not record progress", extra={**body, "run_id": self.run_id, "error": str(exc)})


TIMEOUTS = frozenset({"States.Timeout", "Sandbox.Timedout"})
_TIMED_OUT_AFTER = re.compile(r"timed out after ([0-9.]+) seconds")


def failure_reason(
    error: Mapping[str, Any], record: Mapping[str, Any], progress: Mapping[str, Any] | None, now: float
) -> str:
    """One readable line for a failed run: the failing step, the error type and its message (or, for a
    timeout, which carries no message, how long the step ran), and how far the step got.

    `error` is what the ASL's Catch put in $.error: {"Error": name, "Cause": text}; a Lambda error's Cause is
    JSON with errorType and errorMessage. The failing step is the run's current step, unless that step had
    already finished (the next one failed before it could record its start)."""
    name = str(error.get("Error") or "Error")
    message = str(error.get("Cause") or "")
    try:
        cause = json.loads(message)
    except ValueError:
        cause = None
    if isinstance(cause, dict):  # a Lambda error, or (TrainOn=sagemaker) the failed training job's description
        name = str(cause.get("errorType") or name)
        message = str(cause.get("errorMessage") or cause.get("FailureReason") or "")
    message = " ".join(message.split())
    step = str(record.get("step") or "")
    finished = step in (record.get("steps") or {})
    reached = progress_text(progress) if progress and step and progress.get("step") == step and not finished else ""
    if name in TIMEOUTS or error.get("Error") in TIMEOUTS:
        said = _TIMED_OUT_AFTER.search(message)
        started = record.get("step_started_at")
        seconds = float(said.group(1)) if said else (now - float(started) if started and not finished else None)
        text = "timed out" + (f" after {seconds:.0f} s" if seconds is not None else "")
        text += f" at {reached}" if reached else ""
    else:
        text = f"{name}: {message}" if message else name
        text += f" (at {reached})" if reached else ""
    if not step:
        return text
    return f"{step}: {text}" if not finished else f"the step after {step}: {text}"


def list_runs(store: ArtifactStore, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first (by start time: scheduled runs are named by EventBridge, CLI runs by time)."""
    ids = {k.split("/")[1] for k in store.list_keys("runs/") if k.endswith("/run.json")}
    records = [read_run(store, i) for i in ids]
    records.sort(key=lambda r: float(r.get("started_at", 0)), reverse=True)
    return records[:limit]
