"""The long-lived local processes (`up`'s moto, the API it starts): garbage collection and thread switching
tuned for request latency.

A full collection walks every tracked object and holds the GIL meanwhile. In moto's process that is botocore's
service models, moto's backends and every stored item, and the pause stalls each request moto serves, the
votes of /feedback included. What is alive once a process is loaded lives as long as the process: frozen
(`gc.freeze`), the collector no longer walks it. Young collections then run less often, so that a burst of
writes, which allocates fast, triggers fewer of them.

Both processes serve concurrent requests on threads of one interpreter. A thread that waits for the GIL gets it
only when the holder blocks or the switch interval ends; with CPython's default interval a short request queued
behind a long one (a burst's write, a scan, the memory refresh) waits in steps of that interval. A shorter one
hands the GIL over sooner, at the cost of more switches."""

from __future__ import annotations

import gc
import sys

YOUNG_THRESHOLD = 20_000  # allocations between young collections (CPython's default is 700)
SWITCH_INTERVAL_S = 0.001  # CPython's default is 0.005


def settle() -> None:
    """Call once the process is loaded: collect what start-up left, freeze the rest, raise the young threshold,
    shorten the GIL's switch interval."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
