"""Handlers for the local Step Functions tests. Each invocation runs in its own subprocess, so any state
between calls (the retry counter) lives in a file named by the event."""

from __future__ import annotations

import os
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
