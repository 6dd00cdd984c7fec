"""Handlers for the local Step Functions tests. Each invocation runs in its own subprocess, so any state
between calls (the retry counter) lives in a file named by the event."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


class RunLocked(Exception):
    """Another run holds the lock (the workflow's Catch routes on this class name)."""


class UpstreamError(Exception):
    """A transient failure the workflow retries."""


def ok(event: dict[str, Any], context: Any) -> dict[str, Any]:
    print("ok handler: stdout goes to the log, not the result")  # must not corrupt the result channel
    return {
        "status": "ok",
        "n": int(event.get("n", 0)) + 1,
        "greeting": os.environ.get("SFN_TEST_GREETING"),
        "bucket": os.environ.get("SFN_TEST_BUCKET"),
        "param": os.environ.get("SFN_TEST_GREETING_PARAM"),
        "function_name": getattr(context, "function_name", None),
    }


def locked(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("mode") == "other":
        raise ValueError("not a lock problem")
    raise RunLocked(f"run {event.get('run_id')} refused: lock held")


def flaky(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Fails with UpstreamError until it has been called `fail_times` times (default 1)."""
    marker = Path(event["marker"])
    calls = len(marker.read_text().splitlines()) if marker.exists() else 0
    with marker.open("a") as fh:
        fh.write("call\n")
    if calls < int(event.get("fail_times", 1)):
        raise UpstreamError(f"transient failure on call {calls + 1}")
    return {"calls": calls + 1}


def boom(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Fault injection target for overrides."""
    raise RuntimeError("injected fault")


def shard(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One map item. Records its process and how many items run at once (files under event["dir"]). The
    first `width` items wait for each other, so they finish only if the runner really runs them together;
    item `fail` always raises UpstreamError."""
    root, index, width = Path(event["dir"]), int(event["item"]["i"]), int(event["width"])
    (root / "running").mkdir(parents=True, exist_ok=True)
    mine = root / "running" / str(os.getpid())
    mine.touch()
    try:
        with (root / "seen").open("a") as fh:
            fh.write(f"{index} {os.getpid()} {len(list((root / 'running').iterdir()))}\n")
        with (root / "caches").open("a") as fh:
            fh.write(f"{index} {os.environ.get('RAG_CACHE_DIR')}\n")
        if index == event.get("fail"):
            raise UpstreamError(f"shard {index} cannot reach S3")
        started = root / "started"
        with started.open("a") as fh:
            fh.write(f"{index}\n")
        deadline = time.monotonic() + 30
        while index < width and len(started.read_text().split()) < width:
            if time.monotonic() > deadline:
                raise TimeoutError(f"item {index}: the other items of the first {width} never started")
            time.sleep(0.05)
        return {"i": index}
    finally:
        mine.unlink()
