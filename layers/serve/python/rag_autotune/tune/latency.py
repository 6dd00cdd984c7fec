"""The smoke gate's latency evidence: the candidate and the live pair timed in turns, in the same seconds, so
that whatever slows the machine (other processes, a noisy neighbour, a cold cache) slows both alike, and the
gate can judge the candidate by its ratio to live instead of by the machine's speed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Latency:
    """Encode+search wall time per query (ms) of each side, sampled alternately over the same queries."""

    candidate: list[float]
    live: list[float]

    @property
    def candidate_p99(self) -> float:
        return _p99(self.candidate)

    @property
    def live_p99(self) -> float:
        return _p99(self.live)

    @property
    def ratio(self) -> float:
        return p99_ratio(self.candidate_p99, self.live_p99)


def p99_ratio(candidate_ms: float, live_ms: float) -> float:
    """candidate / live (1 when both are zero, as with a timer that never moves)."""
    if live_ms <= 0:
        return 1.0 if candidate_ms <= 0 else float("inf")
    return candidate_ms / live_ms


def _p99(samples: list[float]) -> float:
    return float(np.percentile(samples, 99)) if samples else 0.0


def interleaved(
    candidate: Callable[[str], object],
    live: Callable[[str], object],
    queries: Sequence[str],
    n: int = 300,
    timer: Callable[[], float] = time.perf_counter,
) -> Latency:
    """n rounds over `queries` (cycling); each round times the candidate and live on the same query, one right
    after the other, and the order flips every round so that neither side always runs second on warm caches."""
    pool = list(queries) or ["warm-up query"]
    samples: dict[str, list[float]] = {"candidate": [], "live": []}
    sides = (("candidate", candidate), ("live", live))
    for i in range(n):
        query = pool[i % len(pool)]
        for name, run in sides if i % 2 == 0 else sides[::-1]:
            t = timer()
            run(query)
            samples[name].append((timer() - t) * 1000)
    return Latency(samples["candidate"], samples["live"])
