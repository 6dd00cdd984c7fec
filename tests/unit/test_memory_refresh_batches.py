"""Issue 12.4: after a burst of votes, the live memory's refresh reads only the votes since the last one, in
batches, and applies them in chunks, so that no single response to parse and no single hold of the memory's
lock (which /ask's boosts wait for) grows with the burst. Fake store, fake clock, no sleeps."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from rag_autotune.domain import Citation, QueryLog, VersionPair, Vote
from rag_autotune.feedback import record_feedback
from rag_autotune.memory import LiveMemory, MemoryParams, open_live_memory
from tests.fakes import TOKENS, HashEncoder, MemoryArtifactStore, MemoryFeedbackStore

T0 = float(int(time.time()) - 3600)
P = MemoryParams(threshold=0.9, weight=0.3, half_life_days=7.0, client_daily_cap=3, max_penalty=0.25)
QUERIES = ("create a pipe", "open a file", "allocate memory", "named pipe")


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class ReadSpy(MemoryFeedbackStore):
    """Records each votes() call as (since, limit, how many it returned)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[float | None, int, int]] = []

    def votes(self, since: float | None = None, limit: int = 10_000) -> list[Vote]:
        out = super().votes(since, limit)
        self.reads.append((since, limit, len(out)))
        return out


class CountingLock:
    """The memory's lock, counting how often it is taken and the most votes applied under one hold."""

    def __init__(self, live: LiveMemory) -> None:
        self._lock, self._live = threading.Lock(), live
        self.holds, self.most, self._at_enter = 0, 0, 0

    def __enter__(self) -> None:
        self._lock.acquire()
        self.holds += 1
        self._at_enter = len(self._live.memory)

    def __exit__(self, *exc: Any) -> None:
        self.most = max(self.most, len(self._live.memory) - self._at_enter)
        self._lock.release()


def log_votes(fb: MemoryFeedbackStore, n: int, start: float) -> None:
    """n votes from distinct voters on the citations of a few logged queries, 1 ms apart."""
    for i in range(n):
        q = QUERIES[i % len(QUERIES)]
        doc = f"doc{i % 7}"
        cited = (Citation(doc, f"{doc}#0", doc, "", 0.5, 1),)
        n = len(fb.vote_log)  # distinct queries and voters across calls
        shown = TOKENS.issue(QueryLog(f"q{n}", q, VersionPair("v0", "v0-c1"), cited, start, "c"))
        record_feedback(
            fb,
            TOKENS,
            query_id=shown,
            doc_id=doc,
            vote="up",
            user_id=f"u{n}",
            client_id="c",
            comment=None,
            window_s=3600,
            now=lambda t=start + i * 0.001: t,
        )


def live_memory(fb: MemoryFeedbackStore, clock: Clock, **kw: Any) -> LiveMemory:
    return open_live_memory(MemoryArtifactStore(), fb, HashEncoder("v0", 64), P, background=False, clock=clock, **kw)


def test_a_burst_is_read_in_batches_from_the_last_refresh_on() -> None:
    fb, clock = ReadSpy(), Clock(T0)
    live = live_memory(fb, clock, refresh_s=10)
    fb.reads.clear()
    log_votes(fb, 1200, T0 + 1)  # the burst
    clock.t = T0 + 11
    assert live.maybe_refresh() == 1200 and len(live.memory) == 1200
    batch = LiveMemory.READ_BATCH
    # Each next batch re-reads the last vote of the one before (applied once: `add` is idempotent).
    assert [(limit, got) for _, limit, got in fb.reads] == [(batch, batch), (batch, batch), (batch, 202)]
    assert fb.reads[0][0] == pytest.approx(T0 - 90 * 86400 - LiveMemory.OVERLAP_S)  # nothing read before
    # Each next batch starts at the last vote read (just before it: votes of the same instant are kept).
    assert fb.reads[1][0] == pytest.approx(T0 + 1 + (batch - 1) * 0.001, abs=1e-5)
    assert fb.reads[2][0] == pytest.approx(T0 + 1 + (2 * batch - 2) * 0.001, abs=1e-5)

    fb.reads.clear()
    log_votes(fb, 3, T0 + 12)
    clock.t = T0 + 15
    assert live.maybe_refresh() == 0 and fb.reads == []  # fresh: nothing read
    clock.t = T0 + 22
    assert live.maybe_refresh() == 3
    # From the last vote read, minus the overlap: the burst's last seconds once more (idempotently), not all of it
    # from the start, and batch by batch again.
    assert fb.reads[0][0] == pytest.approx(T0 + 1 + 1199 * 0.001 - LiveMemory.OVERLAP_S, abs=1e-5)
    assert all(limit == batch for _, limit, _ in fb.reads)

    fb.reads.clear()
    log_votes(fb, 2, T0 + 40)
    clock.t = T0 + 45
    assert live.maybe_refresh() == 2 and len(fb.reads) == 1  # the burst is out of the overlap now
    assert fb.reads[0] == (pytest.approx(T0 + 12.002 - LiveMemory.OVERLAP_S, abs=1e-5), batch, 3 + 2)


def test_a_refresh_reads_at_most_max_votes() -> None:
    fb, clock = ReadSpy(), Clock(T0)
    live = live_memory(fb, clock, refresh_s=10, max_votes=700)
    fb.reads.clear()
    log_votes(fb, 1000, T0 + 1)
    clock.t = T0 + 11
    first = live.maybe_refresh()
    assert [limit for _, limit, _ in fb.reads] == [LiveMemory.READ_BATCH, 700 - LiveMemory.READ_BATCH]
    assert sum(got for _, _, got in fb.reads) == 700 and first == 699  # one vote read twice, at the boundary
    clock.t = T0 + 22
    assert live.maybe_refresh() == 1000 - first  # the rest, next time


def test_votes_of_one_instant_across_a_batch_boundary_are_all_applied() -> None:
    fb, clock = ReadSpy(), Clock(T0)
    live = live_memory(fb, clock, refresh_s=10)
    for i in range(LiveMemory.READ_BATCH + 20):  # all at the same instant
        log_votes_at = T0 + 1
        q = QUERIES[i % len(QUERIES)]
        cited = (Citation("doc", "doc#0", "doc", "", 0.5, 1),)
        shown = TOKENS.issue(QueryLog(f"q{i}", q, VersionPair("v0", "v0-c1"), cited, T0, "c"))
        record_feedback(
            fb,
            TOKENS,
            query_id=shown,
            doc_id="doc",
            vote="up",
            user_id=f"u{i}",
            client_id="c",
            comment=None,
            window_s=3600,
            now=lambda t=log_votes_at: t,
        )
    clock.t = T0 + 11
    live.maybe_refresh()
    # 520 votes by 520 voters on 4 queries: each counts (the daily cap is per voter).
    assert len(live.memory) == LiveMemory.READ_BATCH + 20


def test_the_memory_lock_is_held_for_one_chunk_at_a_time() -> None:
    fb, clock = ReadSpy(), Clock(T0)
    live = live_memory(fb, clock, refresh_s=10)
    lock = CountingLock(live)
    live._lock = lock  # type: ignore[assignment]
    log_votes(fb, 450, T0 + 1)
    clock.t = T0 + 11
    assert live.maybe_refresh() == 450
    chunk = LiveMemory.APPLY_CHUNK
    assert lock.holds == -(-450 // chunk) and lock.most == chunk  # a request's boosts wait for one chunk at most
