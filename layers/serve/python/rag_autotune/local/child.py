"""Processes `up` starts (the API, each local Lambda invocation) end with it.

`up` stops its children when it stops. Should it die without stopping them (kill -9, a crash), the kernel sends
each one SIGTERM (Linux's PR_SET_PDEATHSIG): an orphaned train step would otherwise go on using every core for
the rest of its timeout. The signal follows the thread that started the child; both callers start it from a
thread that waits for it, so it lives as long as the child does."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1
# Looked up here, in the parent: between fork and exec a multi-threaded process must not load libraries.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """A `preexec_fn` for subprocess: SIGTERM this child when its parent dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
