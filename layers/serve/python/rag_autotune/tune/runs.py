"""Run records (runs/<id>/run.json) and the run lock (tune/lock.json), both in the artifact store.

The lock is a create-only conditional write, so two starts cannot both take it. A lock older than
`stale_after_s` (a run killed without cleanup) may be taken over, again by a conditional write."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from ..errors import ArtifactNotFound, ConflictError, RagError
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
    record.setdefault("steps", {})[step] = {"seconds": seconds}
    record.update(step=step, **fields)
    write_run(store, record)


def list_runs(store: ArtifactStore, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first (by start time: scheduled runs are named by EventBridge, CLI runs by time)."""
    ids = {k.split("/")[1] for k in store.list_keys("runs/") if k.endswith("/run.json")}
    records = [read_run(store, i) for i in ids]
    records.sort(key=lambda r: float(r.get("started_at", 0)), reverse=True)
    return records[:limit]
