"""Issue 7: the serve-time feedback memory (memory.py) with fakes: refresh, decay, caps, the version tie after a
swap, the off switch, and the smoke step that tunes and ships it."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_autotune.ask import ask
from rag_autotune.domain import Citation, QueryLog, VersionPair, Vote
from rag_autotune.feedback import record_feedback
from rag_autotune.generate import ExtractiveGenerator
from rag_autotune.ingest import build_version, ingest
from rag_autotune.live import LiveState
from rag_autotune.memory import (
    DAY_S,
    LiveMemory,
    MemoryParams,
    MemoryVote,
    VoteMemory,
    hamming_cutoff,
    memory_key,
    open_live_memory,
    pack_vector,
    unpack_vector,
)
from rag_autotune.runtime import Runtime
from rag_autotune.settings import Settings
from rag_autotune.tune import steps
from rag_autotune.tune.dataset import is_heldout
from rag_autotune.tune.gate import MemoryPoint, choose_memory, memory_verdict
from rag_autotune.tune.state import RunStart
from rag_autotune.versions import read_manifest, read_stats, swap
from tests.fakes import HashEncoder, MemoryArtifactStore, MemoryFeedbackStore, MemoryVectorIndex

T0 = float(int(time.time()) - 3600)  # recent: the smoke step reads the votes of the last 90 days
P = MemoryParams(threshold=0.9, weight=0.3, half_life_days=7.0, client_daily_cap=3, max_penalty=0.25)
DOCS = [
    ("pipe.2", "pipe(2)", "pipe creates a pipe, a unidirectional data channel with two file descriptors."),
    ("open.2", "open(2)", "open opens the file specified by pathname and may create it."),
    ("malloc.3", "malloc(3)", "malloc allocates size bytes of memory and returns a pointer."),
    ("fifo.7", "fifo(7)", "a fifo special file is a named pipe, a data channel between processes."),
    ("socketpair.2", "socketpair(2)", "create a pair of connected sockets, a data channel for processes."),
]


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class CountingEncoder(HashEncoder):
    def __init__(self, version: str = "v0", dim: int = 64) -> None:
        super().__init__(version, dim)
        self.texts: list[str] = []

    def encode(self, texts: Any) -> Any:
        self.texts.extend(texts)
        return super().encode(texts)


class SpyFeedback(MemoryFeedbackStore):
    def __init__(self) -> None:
        super().__init__()
        self.since: list[float | None] = []

    def votes(self, since: float | None = None, limit: int = 10_000) -> list[Vote]:
        self.since.append(since)
        return super().votes(since, limit)


def vec(text: str, version: str = "v0", dim: int = 64) -> Any:
    return HashEncoder(version, dim).encode([text])[0]


def mv(query: str, doc: str, voter: str = "a", up: bool = True, t: float = T0) -> MemoryVote:
    return MemoryVote(query, doc, voter, up, t)


def log_vote(fb: MemoryFeedbackStore, q: str, doc: str, kind: str, t: float, *, model: str = "v0", **kw: Any) -> None:
    qid = f"q-{len(fb.queries)}"
    embedding = pack_vector(vec(q, model)) if model else b""
    cited = (Citation(doc, f"{doc}#0", doc, "", 0.5, 1),)
    fb.log_query(QueryLog(qid, q, VersionPair(model, f"{model}-c1"), cited, t, kw.get("client_id", "c1"), embedding))
    vote_on(fb, qid, doc, kind, user_id=kw.get("user_id"), client_id=kw.get("client_id", "c1"), at=t)


def vote_on(
    fb: MemoryFeedbackStore,
    query_id: str,
    doc: str,
    kind: str,
    *,
    user_id: str | None = None,
    client_id: str = "c1",
    at: float = T0 + 1,
) -> None:
    """A vote through /feedback's logic, as a user would cast it."""
    record_feedback(
        fb,
        query_id=query_id,
        doc_id=doc,
        vote=kind,  # type: ignore[arg-type]
        user_id=user_id,
        client_id=client_id,
        comment=None,
        window_s=3600,
        now=lambda: at,
    )


# ---- the memory itself -------------------------------------------------------------------------------------


def test_pack_vector_round_trip_is_close() -> None:
    v = vec("how do I create a pipe")
    back = unpack_vector(pack_vector(v))
    assert back.dtype == np.float32 and len(pack_vector(v)) == 2 * v.shape[0]
    assert float(back @ v) > 0.999


def test_boost_applies_only_above_threshold_up_and_down() -> None:
    mem = VoteMemory("v0", 64, P, epoch=T0)
    mem.add(mv("create a pipe", "pipe.2"), vec("create a pipe"))
    mem.add(mv("create a pipe", "open.2", up=False), None)  # the row is known: no vector needed
    near = mem.boosts(vec("create a pipe"), T0)
    assert near["pipe.2"] == pytest.approx(0.3) and near["open.2"] == pytest.approx(-0.25)  # -0.3, capped
    assert mem.boosts(vec("allocate memory"), T0) == {}
    with pytest.raises(ValueError):
        mem.add(mv("a new question", "x"), None)


def test_decay_halves_a_vote_every_half_life() -> None:
    mem = VoteMemory("v0", 64, P, epoch=T0)
    mem.add(mv("create a pipe", "pipe.2", t=T0), vec("create a pipe"))
    now = mem.boosts(vec("create a pipe"), T0)["pipe.2"]
    later = mem.boosts(vec("create a pipe"), T0 + 7 * DAY_S)["pipe.2"]
    much_later = mem.boosts(vec("create a pipe"), T0 + 21 * DAY_S)["pipe.2"]
    assert later == pytest.approx(now / 2) and much_later == pytest.approx(now / 8)
    # An older vote weighs less than a fresh one, at the same moment.
    mem.add(mv("create a pipe", "fifo.7", voter="b", t=T0 - 7 * DAY_S))
    b = mem.boosts(vec("create a pipe"), T0)
    assert b["fifo.7"] == pytest.approx(b["pipe.2"] / 2)


def test_one_voter_counts_once_latest_wins_and_opposites_cancel() -> None:
    mem = VoteMemory("v0", 64, P, epoch=T0)
    q = "create a pipe"
    for i in range(5):  # the same 👍 five times: once
        mem.add(mv(q, "pipe.2", voter="a", t=T0 + i), vec(q))
    assert len(mem) == 1 and mem.boosts(vec(q), T0 + 5)["pipe.2"] == pytest.approx(0.3, rel=1e-3)
    assert not mem.add(mv(q, "pipe.2", voter="a", t=T0 + 1))  # an older copy (overlapping refresh): no change
    mem.add(mv(q, "pipe.2", voter="a", up=False, t=T0 + 10))  # changed their mind: one 👎
    assert mem.boosts(vec(q), T0 + 10)["pipe.2"] < 0
    mem.add(mv(q, "pipe.2", voter="b", up=True, t=T0 + 10))  # another user's 👍 cancels it
    assert "pipe.2" not in mem.boosts(vec(q), T0 + 10)


def test_client_cap_per_document_per_day() -> None:
    mem = VoteMemory("v0", 64, P, epoch=T0)
    questions = [f"question number {i} about pipes" for i in range(6)]
    for i, q in enumerate(questions):
        mem.add(mv(q, "pipe.2", voter="spammer", t=T0 + i), vec(q))
    assert len(mem) == 3  # client_daily_cap: three queries on this document today
    counted = [q for q in questions if "pipe.2" in mem.boosts(vec(q), T0)]
    assert counted == questions[:3]
    mem.add(mv(questions[4], "pipe.2", voter="spammer", t=T0 + DAY_S), vec(questions[4]))  # the next day
    assert len(mem) == 4
    mem.add(mv(questions[5], "open.2", voter="spammer", t=T0 + 9), vec(questions[5]))  # another document
    assert len(mem) == 5


def test_many_downvotes_demote_but_never_hide() -> None:
    mem = VoteMemory("v0", 64, P, epoch=T0)
    for i in range(50):
        mem.add(mv("create a pipe", "pipe.2", voter=f"user{i}", up=False), vec("create a pipe"))
    assert mem.boosts(vec("create a pipe"), T0)["pipe.2"] == pytest.approx(-P.max_penalty)


def test_snapshot_round_trip_keeps_tuned_values_and_takes_safety_from_settings() -> None:
    tuned = replace(P, threshold=0.98, weight=0.5, enabled=False)
    mem = VoteMemory("v3", 64, tuned, epoch=T0)
    for i, q in enumerate(["create a pipe", "open a file", "allocate memory"]):
        mem.add(mv(q, DOCS[i][0], voter=f"u{i}", t=T0 + i), vec(q, "v3"))
        mem.add(mv(q, DOCS[i + 1][0], voter=f"u{i}", up=False, t=T0 + i), None)
    data = mem.to_bytes(as_of=T0 + 5, extra={"run_id": "r1"})
    back, meta = VoteMemory.from_bytes(data, replace(P, max_penalty=0.1))
    assert meta["as_of"] == T0 + 5 and meta["run_id"] == "r1" and meta["model_version"] == "v3"
    assert (back.params.threshold, back.params.weight, back.params.enabled) == (0.98, 0.5, False)
    assert back.params.max_penalty == 0.1
    assert len(back) == len(mem) == 6 and back.queries == 3
    back.params = replace(back.params, enabled=True, max_penalty=P.max_penalty)
    mem.params = replace(mem.params, enabled=True)
    for q in ("create a pipe", "open a file"):
        a, b = mem.boosts(vec(q, "v3"), T0 + 5), back.boosts(vec(q, "v3"), T0 + 5)
        assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 2e-3 for k in a)


# ---- the live memory: refresh and the version tie ------------------------------------------------------------


def test_refresh_is_incremental_at_most_every_n_seconds_and_uses_logged_vectors() -> None:
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
    assert enc.texts == [] and live.encoded == 0  # the vector logged at /ask, not re-encoded
    log_vote(fb, "open a file", "open.2", "down", T0 + 12)
    clock.t = T0 + 22
    assert live.maybe_refresh() == 1  # only the new vote applies (the overlap re-reads, idempotently)
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


def test_vote_logged_under_another_encoder_is_re_encoded_once() -> None:
    fb, enc = MemoryFeedbackStore(), CountingEncoder("v1", dim=32)
    for voter in ("a", "b", "c"):
        log_vote(fb, "create a pipe", "pipe.2", "up", T0, model="v0", client_id=voter)
    log_vote(fb, "open a file", "open.2", "up", T0 + 1, model="", client_id="a")  # no logged vector at all
    live = open_live_memory(MemoryArtifactStore(), fb, enc, P, clock=Clock(T0 + 2))
    assert sorted(enc.texts) == ["create a pipe", "open a file"] and live.encoded == 2
    assert live.boosts(vec("create a pipe", "v1", 32))["pipe.2"] == pytest.approx(0.9, rel=1e-3)  # 3 voters


def test_memory_of_one_version_refuses_another_encoder() -> None:
    with pytest.raises(ValueError, match="v0"):
        LiveMemory(VoteMemory("v0", 64, P), MemoryFeedbackStore(), HashEncoder("v1"), as_of=T0)


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    store, index, fb = MemoryArtifactStore(), MemoryVectorIndex(), MemoryFeedbackStore()
    store.put_bytes("models/v0/meta.json", b"{}")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps({"id": i, "title": t, "text": x}) for i, t, x in DOCS))
    encoders: dict[str, HashEncoder] = {"v0": HashEncoder("v0"), "v1": HashEncoder("v1", dim=32)}
    ingest(corpus, store=store, index=index, load_encoder=encoders.__getitem__)
    wall = Clock()
    live = LiveState(
        store,
        index,
        encoders.__getitem__,
        ttl_s=0,
        load_memory=lambda enc: open_live_memory(store, fb, enc, P, refresh_s=0, background=False, clock=wall),
    )
    return {"store": store, "index": index, "fb": fb, "live": live, "encoders": encoders, "wall": wall}


def _ask(w: dict[str, Any], query: str, client: str = "c1", top_k: int = 3) -> Any:
    return ask(query, top_k, w["live"].current(), w["fb"], ExtractiveGenerator(), client_id=client, now=w["wall"])


def test_votes_rerank_at_once_and_citations_say_boosted(world: dict[str, Any]) -> None:
    q = "a data channel between processes"
    first = _ask(world, q)
    assert not any(c.boosted for c in first.citations)
    logged = world["fb"].get_query(first.query_id)
    assert unpack_vector(logged.embedding) @ vec(q) > 0.999  # the query's vector is logged with it
    top = first.citations[0].doc_id
    for voter in ("u1", "u2"):  # two users say the top document is wrong
        vote_on(world["fb"], first.query_id, top, "down", user_id=voter)
    world["wall"].t = T0 + 2
    again = _ask(world, q, top_k=len(DOCS))  # every document is cited: the demoted one is surely among them
    assert again.citations[0].doc_id != top  # its replacement surfaced
    (moved,) = [c for c in again.citations if c.doc_id == top]
    assert moved.boosted and moved.rank > 1 and moved.score < first.citations[0].score
    assert [c.score for c in again.citations] == sorted((c.score for c in again.citations), reverse=True)
    assert not _ask(world, "allocate bytes of memory").citations[0].boosted  # unrelated queries untouched


def test_version_tie_after_swap_no_old_memory_with_the_new_encoder(world: dict[str, Any]) -> None:
    w = world
    first = _ask(w, "create a pipe with two file descriptors")
    vote_on(w["fb"], first.query_id, first.citations[1].doc_id, "up")
    w["wall"].t = T0 + 2
    before = w["live"].current()
    assert before.memory is not None and before.memory.maybe_refresh() == 1  # as the next /ask would
    assert before.memory is not None and before.memory.model_version == "v0" and len(before.memory.memory) == 1

    # The tune run's candidate: encoder v1 (another dimension, so mixing would fail loudly) and its index.
    manifest, etag = read_manifest(w["store"])  # type: ignore[misc]
    chunks = list(w["index"].chunks(manifest.live.index_version))
    build_version("v1-c1", chunks, w["encoders"]["v1"], w["index"], w["store"])
    stats = read_stats(w["store"], "v1-c1")
    swap(
        w["store"],
        VersionPair("v1", "v1-c1"),
        expected_etag=etag,
        reason="tune",
        documents=stats.documents,
        chunks=stats.chunks,
    )

    after = w["live"].current()
    assert after.pair.model_version == "v1"
    assert after.memory is not None and after.memory.model_version == "v1" and after.memory.memory.dim == 32
    assert after.memory is not before.memory and len(after.memory.memory) == 1  # the vote, re-encoded with v1
    assert after.memory.encoded == 1
    again = _ask(w, "create a pipe with two file descriptors")
    assert again.pair.model_version == "v1" and any(c.boosted for c in again.citations)


def test_shipped_snapshot_is_loaded_with_its_tuned_values(world: dict[str, Any]) -> None:
    snap = VoteMemory("v0", 64, replace(P, threshold=0.98, weight=0.5), epoch=T0)
    snap.add(mv("create a pipe", "fifo.7", voter="z", t=T0 - 100), vec("create a pipe"))
    world["store"].put_bytes(memory_key("v0"), snap.to_bytes(as_of=T0 - 100))
    mem = world["live"].current().memory
    assert mem.memory.params.threshold == 0.98 and mem.memory.params.weight == 0.5
    assert mem.memory.params.max_penalty == P.max_penalty and len(mem.memory) == 1


def test_a_damaged_snapshot_falls_back_to_the_vote_log(world: dict[str, Any]) -> None:
    log_vote(world["fb"], "create a pipe", "fifo.7", "up", T0 - 50)
    world["store"].put_bytes(memory_key("v0"), b"not an npz")
    mem = world["live"].current().memory
    assert mem is not None and len(mem.memory) == 1 and mem.memory.params.threshold == P.threshold


def test_off_switch(world: dict[str, Any]) -> None:
    assert Runtime(Settings(memory_enabled=False)).load_memory(HashEncoder("v0")) is None
    q = "a data channel between processes"
    first = _ask(world, q)
    for voter in ("u1", "u2"):
        vote_on(world["fb"], first.query_id, first.citations[0].doc_id, "down", user_id=voter)
    off = LiveState(world["store"], world["index"], world["encoders"].__getitem__, ttl_s=0)  # no memory loader
    plain = ask(q, 3, off.current(), world["fb"], ExtractiveGenerator())
    assert off.current().memory is None
    assert [c.doc_id for c in plain.citations] == [c.doc_id for c in first.citations]
    assert not any(c.boosted for c in plain.citations)
    # A memory the gate shipped disabled is off too.
    live = world["live"].current()
    live.memory.memory.params = replace(live.memory.memory.params, enabled=False)
    assert [c.doc_id for c in _ask(world, q).citations] == [c.doc_id for c in first.citations]


# ---- the gate's choice, and the smoke step that ships the memory ---------------------------------------------


def test_choose_memory_prefers_safe_points_then_conservative() -> None:
    grid = [
        MemoryPoint(0.9, 0.5, repeated=0.95, unseen=0.60),  # best on repeated, but hurts unseen questions
        MemoryPoint(0.95, 0.3, repeated=0.92, unseen=0.70),
        MemoryPoint(0.98, 0.3, repeated=0.92, unseen=0.70),  # same scores, higher threshold: preferred
        MemoryPoint(0.98, 0.1, repeated=0.85, unseen=0.70),
    ]
    assert choose_memory(grid, unseen_without=0.70) == grid[2]
    assert choose_memory(grid[:1], unseen_without=0.70) == grid[0]  # nothing safe: most conservative
    assert memory_verdict({"ndcg@10": 0.7, "n": 3}, {"ndcg@10": 0.69, "n": 3}).passed is False
    assert memory_verdict({"ndcg@10": 0.7, "n": 3}, {"ndcg@10": 0.7, "n": 3}).passed is True


def _tune_to_smoke(w: dict[str, Any]) -> dict[str, Any]:
    """Prepare → embed → smoke of a run whose candidate is encoder v1; the report's memory section."""
    settings = Settings(tune_min_feedback=3, tune_heldout_fraction=0.3, tune_margin=-1.0)
    kw: dict[str, Any] = {"store": w["store"], "index": w["index"]}
    kw["now"] = lambda: T0 + 30
    state = steps.prepare(RunStart(run_id="r1"), feedback=w["fb"], settings=settings, **kw)
    assert state.status == "RUNNING"
    w["store"].put_bytes("models/v1/meta.json", b"{}")
    state = steps.embed(state, load_encoder=w["encoders"].__getitem__, **kw)
    enc = w["encoders"].__getitem__
    # A timer that stands still: every latency sample is 0 ms, so the machine's speed decides nothing here.
    steps.smoke(state, load_encoder=enc, settings=settings, feedback=w["fb"], timer=Clock(), **kw)
    return json.loads(w["store"].get_bytes("runs/r1/report.json"))["memory"]  # type: ignore[no-any-return]


def _shipped(w: dict[str, Any], mem: dict[str, Any]) -> VoteMemory:
    snap, meta = VoteMemory.from_bytes(w["store"].get_bytes(memory_key("v1")))
    assert snap.model_version == "v1" and snap.dim == 32 and meta["reasons"] == mem["reasons"]
    assert (snap.params.threshold, snap.params.weight, snap.params.enabled) == (
        mem["threshold"],
        mem["weight"],
        mem["enabled"],
    )
    return snap


def test_smoke_evaluates_with_and_without_memory_and_ships_it_with_the_candidate(world: dict[str, Any]) -> None:
    w = world
    qs = ["make a pipe", "open a file", "allocate memory", "named pipe fifo", "connected sockets", "create file"]
    relevant = ["pipe.2", "open.2", "malloc.3", "fifo.7", "socketpair.2", "open.2"]
    for i, (q, d) in enumerate(zip(qs, relevant, strict=True)):
        log_vote(w["fb"], q, d, "up", T0 + i, client_id=f"c{i}")
        log_vote(w["fb"], q, relevant[i - 1], "down", T0 + i + 0.5, client_id=f"c{i}")
    mem = _tune_to_smoke(w)
    assert mem["votes"] == 12 and len(mem["grid"]) == 9
    assert set(mem["rows"]) == {"live", "live+memory", "candidate", "candidate+memory"}
    assert (mem["threshold"], mem["weight"]) in {(g["threshold"], g["weight"]) for g in mem["grid"]}
    rows = mem["rows"]
    assert rows["candidate+memory"]["repeated"]["ndcg@10"] >= rows["candidate"]["repeated"]["ndcg@10"]
    # Consistent votes: remembering them does not hurt the held-out queries, so the memory ships enabled.
    assert rows["candidate"]["heldout"]["n"] > 0
    assert rows["candidate+memory"]["heldout"]["ndcg@10"] >= rows["candidate"]["heldout"]["ndcg@10"]
    assert mem["enabled"] is True
    snap = _shipped(w, mem)
    assert VoteMemory.from_bytes(w["store"].get_bytes(memory_key("v1")))[1]["as_of"] == T0 + 5.5
    assert len(snap) == 12
    assert "Feedback memory" in w["store"].get_bytes("runs/r1/report.html").decode()


def _one_question_split_in_two(fraction: float) -> tuple[str, str]:
    """Two spellings of one question that the encoders cannot tell apart (they strip the punctuation) but that
    the train/held-out split hashes apart: (the train spelling, the held-out one)."""
    for base in ("make a pipe", "create a pipe", "how to make a pipe", "a pipe between processes"):
        spellings = [base, *(base + p for p in ".,;:"), f"({base})", f"[{base}]"]
        train = [s for s in spellings if not is_heldout(s, fraction)]
        held = [s for s in spellings if is_heldout(s, fraction)]
        if train and held:
            return train[0], held[0]
    raise AssertionError("no spelling pair falls on both sides of the split")


def test_smoke_ships_the_memory_disabled_when_it_lowers_held_out_queries(world: dict[str, Any]) -> None:
    """Votes on a training question that contradict what the same question, asked by someone else and held
    out, needs: remembered, they would push the right answer down for the held-out one. The gate measures that
    and ships the memory disabled (still beside the model, with the reason)."""
    w = world
    train_q, held_q = _one_question_split_in_two(0.3)
    for voter in ("a", "b", "c"):  # three users insist the pipe question is about malloc
        log_vote(w["fb"], train_q, "malloc.3", "up", T0 + 1, client_id=voter)
        log_vote(w["fb"], train_q, "pipe.2", "down", T0 + 2, client_id=voter)
    log_vote(w["fb"], held_q, "pipe.2", "up", T0 + 3, client_id="d")
    mem = _tune_to_smoke(w)
    rows = mem["rows"]
    assert rows["candidate"]["heldout"]["n"] == 1
    assert rows["candidate+memory"]["heldout"]["ndcg@10"] < rows["candidate"]["heldout"]["ndcg@10"]
    assert rows["candidate+memory"]["repeated"]["ndcg@10"] > rows["candidate"]["repeated"]["ndcg@10"]
    assert mem["enabled"] is False and "shipped disabled" in mem["reasons"][0]
    snap = _shipped(w, mem)
    assert snap.params.enabled is False and len(snap) == 7  # every vote, the held-out one too, for serving


# ---- the SimHash prefilter: the same near rows as a full scan ---------------------------------------------------


def _at_cosine(q: Any, c: float, rng: np.random.Generator) -> Any:
    """A unit vector with cosine exactly c to the unit vector q."""
    r = rng.standard_normal(q.shape[0]).astype(np.float32)
    r -= (r @ q) * q
    return c * q + np.sqrt(1 - c * c) * r / np.linalg.norm(r)


@pytest.mark.parametrize("threshold", [0.95, 0.9, 0.8, 0.3])
def test_prefilter_finds_exactly_the_rows_a_full_scan_finds(threshold: float) -> None:
    rng = np.random.default_rng(7)
    dim, mem = 384, VoteMemory("v0", 384, replace(P, threshold=threshold))
    queries = [v / np.linalg.norm(v) for v in rng.standard_normal((20, dim)).astype(np.float32)]
    rows = []
    for q in queries:  # per query: rows just above and just below the threshold, and unrelated ones
        rows += [_at_cosine(q, min(threshold + d, 1.0), rng) for d in (0.0005, 0.002, 0.01, 0.03, -0.002, -0.03)]
        rows += list(rng.standard_normal((40, dim)).astype(np.float32))
    for i, v in enumerate(rows):
        mem.add(mv(f"q{i}", f"doc{i}", t=T0), v)
    matrix = np.stack([v / np.linalg.norm(v) for v in rows])
    pruned = 0
    for q in queries:
        near, sims = mem._near(q, mem.queries)
        exact = np.flatnonzero(matrix @ q >= threshold)
        assert near.tolist() == exact.tolist() and np.allclose(sims, matrix[exact] @ q, atol=1e-5)
        pruned += hamming_cutoff(threshold) < 128
    assert pruned == (20 if threshold >= 0.8 else 0)  # loose thresholds scan every row


def test_snapshot_rows_load_in_bulk_and_match_added_rows() -> None:
    rng = np.random.default_rng(3)
    mem, vectors = VoteMemory("v0", 64, P, epoch=T0), rng.standard_normal((50, 64)).astype(np.float32)
    for i, v in enumerate(vectors):
        mem.add(mv(f"query {i % 40}", f"doc{i % 7}", voter=f"u{i}", up=bool(i % 3), t=T0 + i), v)
    back, _ = VoteMemory.from_bytes(mem.to_bytes(as_of=T0 + 60))
    assert back.queries == mem.queries == 40 and len(back) == len(mem)
    for q in vectors[:5]:  # each is a remembered query: its own votes boost
        a, b = mem.boosts(q, T0 + 60), back.boosts(q, T0 + 60)
        assert a and a.keys() == b.keys() and all(abs(a[k] - b[k]) < 2e-3 for k in a)


def test_cold_load_reads_the_snapshot_beside_the_encoder_once(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = world["store"]
    shipped = VoteMemory("v0", 64, P, epoch=T0)
    shipped.add(mv("create a pipe", "pipe.2"), vec("create a pipe"))
    store.put_bytes(memory_key("v0"), shipped.to_bytes(as_of=T0))
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
