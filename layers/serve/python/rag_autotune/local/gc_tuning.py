"""Garbage collection for the long-lived local processes (`up`'s moto, the API it starts).

A full collection walks every tracked object and holds the GIL meanwhile. In moto's process that is botocore's
service models, moto's backends and every stored item, and the pause stalls each request moto serves, the
query-log write of /ask and the votes of /feedback included. What is alive once a process is loaded lives as
long as the process: frozen (`gc.freeze`), the collector no longer walks it. Young collections then run less
often, so that a burst of writes, which allocates fast, triggers fewer of them."""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # allocations between young collections (CPython's default is 700)


def settle() -> None:
    """Call once the process is loaded: collect what start-up left, freeze the rest, raise the young threshold."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
