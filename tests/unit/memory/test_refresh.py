"""The live memory (memory/refresh.py): incremental refresh, in the background, the version tie, the cold load."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from rag_autotune.domain import Vote
from rag_autotune.live import LiveState
from rag_autotune.memory import DAY_S, LiveMemory, VoteMemory, dump_snapshot, memory_key, open_live_memory
from rag_autotune.runtime import Runtime
from rag_autotune.settings import Settings
from tests.fakes import HashEncoder, MemoryArtifactStore, MemoryFeedbackStore
from tests.unit.memory.support import T0, Clock, CountingEncoder, P, SpyFeedback, log_vote, mv, stored_vote, vec


def test_refresh_is_incremental_at_most_every_n_seconds_and_encodes_a_query_once() -> None:
    fb, clock, enc = SpyFeedback(), Clock(), CountingEncoder("v0")
    live = open_live_memory(MemoryArtifactStore(), fb, enc, P, refresh_s=10, background=False, clock=clock)
    # No snapshot: every vote of the last 90 days.
    assert fb.since == [T0 - 90 * DAY_S - LiveMemory.OVERLAP_S] and len(live.memory) == 0
    log_vote(fb, "create a pipe", "pipe.2", "up", T0 + 1)
    clock.t = T0 + 5
    assert live.maybe_refresh() == 0 and live.boosts(vec("create a pipe")) == {}  # not yet: 10 s apart
    clock.t = T0 + 11
    assert live.maybe_refresh() == 1
    assert live.boosts(vec("create a pipe"))["pipe.2"] > 0.29
    assert enc.texts == ["create a pipe"] and live.encoded == 1
    log_vote(fb, "create a pipe", "fifo.7", "up", T0 + 11.5, client_id="c2")  # the same query again
    log_vote(fb, "open a file", "open.2", "down", T0 + 12)
    clock.t = T0 + 22
    assert live.maybe_refresh() == 2  # only the new votes apply (the overlap re-reads, idempotently)
    assert enc.texts == ["create a pipe", "open a file"]  # a query already in the memory is not encoded again
    assert fb.since[-1] == pytest.approx(T0 + 1 - LiveMemory.OVERLAP_S)


class GatedFeedback(MemoryFeedbackStore):
    """votes() waits for the test to open the gate: a slow DynamoDB query, or one that fails."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.entered, self.fail, self.calls = threading.Event(), threading.Event(), False, 0

    def votes(self, since: float | None = None, limit: int = 10_000) -> list[Vote]:
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(5)
        if self.fail:
            raise RuntimeError("the vote index answered garbage")
        return super().votes(since, limit)


def test_background_refresh_answers_from_the_current_memory_and_applies_the_votes_later() -> None:
    fb, clock = GatedFeedback(), Clock()
    fb.gate.set()
    live = open_live_memory(MemoryArtifactStore(), fb, HashEncoder("v0"), P, refresh_s=10, clock=clock)
    log_vote(fb, "create a pipe", "pipe.2", "up", T0 + 1)
    fb.gate.clear()
    fb.entered.clear()
    clock.t = T0 + 11
    assert live.maybe_refresh() == 0  # returns at once, while the vote query is still "in flight"
    assert fb.entered.wait(5) and live.pending is not None and live.pending.is_alive()
    assert live.boosts(vec("create a pipe")) == {}  # answered from the memory as it was
    assert live.maybe_refresh() == 0 and fb.calls == 2  # one refresh at a time: no second query
    fb.gate.set()
    live.pending.join(5)
    assert live.boosts(vec("create a pipe"))["pipe.2"] > 0.29

    # A refresh that crashes on a background thread is logged; the next stale request tries again.
    log_vote(fb, "open a file", "open.2", "up", T0 + 12)
    fb.fail = True
    clock.t = T0 + 22
    live.maybe_refresh()
    assert live.pending is not None
    live.pending.join(5)
    assert "open.2" not in live.boosts(vec("open a file"))
    fb.fail = False
    live.maybe_refresh()
    live.pending.join(5)
    assert live.boosts(vec("open a file"))["open.2"] > 0.29


def test_a_voted_query_is_encoded_once_unless_its_vote_carries_this_encoders_vector() -> None:
    fb, enc = MemoryFeedbackStore(), CountingEncoder("v1", dim=32)
    for voter in ("a", "b", "c"):
        log_vote(fb, "create a pipe", "pipe.2", "up", T0, model="v0", client_id=voter)
    log_vote(fb, "open a file", "open.2", "up", T0 + 1, model="v1", client_id="a")  # /feedback stores no vector
    stored_vote(fb, "close a file", "open.2", "up", T0 + 1, model="v1", voter="b", dim=32)  # an older vote's own
    stored_vote(fb, "read a file", "open.2", "up", T0 + 1, model="v0", voter="c")  # another encoder's: re-encoded
    live = open_live_memory(MemoryArtifactStore(), fb, enc, P, clock=Clock(T0 + 2))
    assert sorted(enc.texts) == ["create a pipe", "open a file", "read a file"] and live.encoded == 3
    assert live.boosts(vec("create a pipe", "v1", 32))["pipe.2"] == pytest.approx(3.0, rel=1e-3)  # 3 voters


def test_memory_of_one_version_refuses_another_encoder() -> None:
    with pytest.raises(ValueError, match="v0"):
        LiveMemory(VoteMemory("v0", 64, P), MemoryFeedbackStore(), HashEncoder("v1"), as_of=T0)


def test_cold_load_reads_the_snapshot_beside_the_encoder_once(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = world["store"]
    shipped = VoteMemory("v0", 64, P, epoch=T0)
    shipped.add(mv("create a pipe", "pipe.2"), vec("create a pipe"))
    store.put_bytes(memory_key("v0"), dump_snapshot(shipped, as_of=T0))
    reads: list[str] = []
    get_bytes = store.get_bytes
    monkeypatch.setattr(store, "get_bytes", lambda key: reads.append(key) or get_bytes(key))
    rt = Runtime(Settings())
    rt.__dict__.update(store=store, feedback=world["fb"])  # the cached_property adapters, replaced by fakes
    threads: list[str] = []

    def prefetch(version: str) -> None:
        threads.append(threading.current_thread().name)
        rt.prefetch_memory(version)

    live = LiveState(
        store,
        world["index"],
        world["encoders"].__getitem__,
        ttl_s=0,
        load_memory=rt.load_memory,
        prefetch_memory=prefetch,
    )
    memory = live.current().memory
    assert memory is not None and memory.memory.queries == 1 and "pipe.2" in memory.boosts(vec("create a pipe"))
    assert threads and threads[0].startswith("load-pair")  # beside the encoder, not after it
    assert reads.count(memory_key("v0")) == 1 and rt._snapshots == {}  # read once, then handed over
