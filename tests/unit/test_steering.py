"""Vote steering (steering.py): the formula in our code, the feedback a memory builds, the fit on the train split
and its held-out check (tune/steering_fit.py), the snapshot that carries it, and /ask over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from rag_autotune import http_api
from rag_autotune.domain import Chunk
from rag_autotune.ingest import ingest
from rag_autotune.memory import (
    MemoryParams,
    MemoryVote,
    VoteMemory,
    build_memory,
    dump_snapshot,
    load_snapshot,
    memory_key,
)
from rag_autotune.ports import Vectors
from rag_autotune.steering import Steer, SteerParams, steer_from, steered_matrix_scores, steered_scores
from rag_autotune.tune.gate import SteerPoint, choose_steering, steering_verdict
from rag_autotune.tune.metrics import Judged
from rag_autotune.tune.steering_fit import doc_vectors, evaluate_steering
from tests.fakes import MemoryVectorIndex, fake_runtime

ON = SteerParams(radius=0.5, a=1.0, b=1.0, c=0.5, enabled=True)


def unit(*xs: float) -> Vectors:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


# ---- the formula in our code --------------------------------------------------------------------------------


def test_the_formula_is_a_times_similarity_plus_the_weighted_pair_difference() -> None:
    steer = Steer(unit(1, 0), 2.0, unit(0, 1), -1.0, a=0.5, b=2.0, c=0.1, questions=1)
    assert steer.confidence == 3.0 and steer.weight == pytest.approx(0.1 * 9.0)
    got = steered_scores(
        np.array([0.2, 0.9], np.float32), np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32), steer
    )
    np.testing.assert_allclose(got, [0.5 * 0.2 + 0.9 * 1.0, 0.5 * 0.9 - 0.9 * 1.0], rtol=1e-6)
    matrix = np.stack([unit(1, 0), unit(0, 1), unit(1, 1)])
    np.testing.assert_allclose(
        steered_matrix_scores(matrix, unit(1, 1), steer),
        0.5 * (matrix @ unit(1, 1)) + 0.9 * (matrix @ unit(1, 0) - matrix @ unit(0, 1)),
        rtol=1e-6,
    )


def test_the_feedback_has_one_up_and_one_down_item_and_the_target_stands_in_for_a_missing_side() -> None:
    q = unit(1, 1, 0)
    vectors = {"up1": unit(1, 0, 0), "up2": unit(0, 0, 1), "down": unit(0, 1, 0)}
    both = steer_from(q, {"up1": 1.0, "up2": 3.0, "down": -2.0, "no-vector": 5.0}, vectors, ON, questions=2)
    assert both is not None and both.questions == 2
    np.testing.assert_allclose(both.positive, unit(1, 0, 3), rtol=1e-6)  # weighted by net score, unit length
    assert (both.positive_score, both.negative_score) == (4.0, -2.0)  # "no-vector" is left out
    np.testing.assert_allclose(both.negative, unit(0, 1, 0))
    ups = steer_from(q, {"up1": 1.0}, vectors, ON, questions=1)
    assert ups is not None and ups.negative_score == 0.0
    np.testing.assert_allclose(ups.negative, q, rtol=1e-6)  # 👍 only: the query is pulled toward them
    downs = steer_from(q, {"down": -1.0}, vectors, ON, questions=1)
    assert downs is not None and downs.positive_score == 0.0
    np.testing.assert_allclose(downs.positive, q, rtol=1e-6)
    assert steer_from(q, {"no-vector": 1.0}, vectors, ON, questions=1) is None


def test_a_memory_steers_from_questions_within_the_radius_only() -> None:
    votes = [
        MemoryVote("near question", "good", "u1", True, 0.0, "good#0"),
        MemoryVote("near question", "bad", "u1", False, 0.0, "bad#0"),
        MemoryVote("far question", "other", "u2", True, 0.0, "other#0"),
    ]
    qv = {"near question": unit(1, 0.3, 0), "far question": unit(0, 0, 1)}
    mem = build_memory("v0", votes, qv, 3, MemoryParams(), epoch=0.0, steering=ON)
    assert mem.missing_doc_vectors() == {"good#0": "good", "bad#0": "bad", "other#0": "other"}
    mem.doc_vectors.update({"good": unit(1, 0, 0), "bad": unit(0, 1, 0), "other": unit(0, 0, 1)})
    steer = mem.steer(unit(1, 0, 0), now=0.0)
    assert steer is not None and steer.questions == 1
    sim = float(unit(1, 0, 0) @ unit(1, 0.3, 0))
    assert steer.positive_score == pytest.approx(sim) and steer.negative_score == pytest.approx(-sim)
    far = mem.steer(unit(0, 1, 1), now=0.0)  # near the far question only (cosine 0.71; 0.20 to the other)
    assert far is not None and far.questions == 1 and far.negative_score == 0.0
    np.testing.assert_allclose(far.positive, unit(0, 0, 1), atol=1e-6)
    assert mem.steer(unit(1, 0, 0), now=0.0, params=SteerParams(radius=0.999, enabled=True)) is None
    mem.steering = SteerParams()  # not fitted, or fitted and shipped off
    assert mem.steer(unit(1, 0, 0), now=0.0) is None


def test_the_snapshot_carries_the_fit_and_the_documents_vectors_and_old_ones_load_with_steering_off() -> None:
    votes = [MemoryVote("open a file", "open.2", "u", True, 5.0, "open.2#0")]
    mem = build_memory("v3", votes, {"open a file": unit(1, 0)}, 2, MemoryParams(), epoch=0.0, steering=ON)
    mem.doc_vectors["open.2"] = unit(0.6, 0.8)
    back, meta = load_snapshot(dump_snapshot(mem, as_of=5.0))
    assert back.steering == ON and meta["steering"]["radius"] == ON.radius
    assert back.doc_chunks == {"open.2": "open.2#0"}
    np.testing.assert_allclose(back.doc_vectors["open.2"], unit(0.6, 0.8), atol=1e-3)
    plain = build_memory("v3", votes, {"open a file": unit(1, 0)}, 2, MemoryParams(), epoch=0.0)
    old = dump_snapshot(plain, as_of=5.0)
    loaded, meta = load_snapshot(old)
    assert loaded.steering.enabled is False and loaded.steer(unit(1, 0), 5.0) is None


# ---- the fit: chosen on the train split, checked on held-out --------------------------------------------------


def test_choose_steering_needs_a_gain_and_prefers_the_tighter_radius_and_smaller_c_on_ties() -> None:
    grid = [
        SteerPoint(0.6, 1.0, 0.3, unseen=0.80),
        SteerPoint(0.8, 1.0, 0.3, unseen=0.80),
        SteerPoint(0.8, 1.0, 0.1, unseen=0.80),
        SteerPoint(0.9, 0.5, 1.0, unseen=0.70),
    ]
    assert choose_steering(grid, unseen_without=0.75) == grid[2]
    assert choose_steering(grid, unseen_without=0.80) is None  # no point beats the unsteered search
    assert steering_verdict({"ndcg@10": 0.7, "n": 3}, {"ndcg@10": 0.69, "n": 3}).passed is False
    assert steering_verdict({"ndcg@10": 0.7, "n": 3}, {"ndcg@10": 0.7, "n": 3}).passed is True
    assert steering_verdict({"ndcg@10": 0.0, "n": 0}, {"ndcg@10": 0.0, "n": 0}).passed is False


class TableEncoder:
    """Query text → a given vector."""

    def __init__(self, table: dict[str, Vectors], dim: int) -> None:
        self.table, self._dim = table, dim

    @property
    def version(self) -> str:
        return "v1"

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


DIM = 24


def _world(
    helpful: bool,
) -> tuple[TableEncoder, MemoryVectorIndex, list[MemoryVote], dict[str, list[Judged]], dict[str, int]]:
    """Eight families of three related questions each. A family's answer (doc a<k>) sits just behind a decoy
    (doc d<k>) in the plain search. Users voted 👍 the answer and 👎 the decoy (helpful), or the reverse."""
    rng = np.random.default_rng(7)
    basis = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0].astype(np.float32)
    chunks, vectors, table = [], [], {}
    judged: dict[str, list[Judged]] = {"repeated": [], "heldout": []}
    votes: list[MemoryVote] = []
    folds: dict[str, int] = {}
    for k in range(8):
        answer, decoy, topic = basis[3 * k % DIM], basis[(3 * k + 1) % DIM], basis[(3 * k + 2) % DIM]
        for doc, v in ((f"a{k}", 0.55 * topic + answer), (f"d{k}", 0.6 * topic + decoy)):
            chunks.append(Chunk(f"{doc}#0", doc, doc, doc))
            vectors.append(v / np.linalg.norm(v))
        for j in range(3):
            q = f"family {k} question {j}"
            v = topic + 0.35 * answer + 0.45 * decoy + 0.12 * rng.standard_normal(DIM).astype(np.float32)
            table[q] = v / np.linalg.norm(v)
            if j == 2:
                judged["heldout"].append(Judged(q, frozenset({f"a{k}"})))
                continue
            folds[q] = j
            judged["repeated"].append(Judged(q, frozenset({f"a{k}"})))
            up, down = (f"a{k}", f"d{k}") if helpful else (f"d{k}", f"a{k}")
            votes.append(MemoryVote(q, up, f"u{k}{j}", True, 1.0, f"{up}#0"))
            votes.append(MemoryVote(q, down, f"u{k}{j}", False, 1.0, f"{down}#0"))
    index = MemoryVectorIndex()
    index.build("v1-c1", DIM, [(chunks, np.stack(vectors))], sparse=False)
    return TableEncoder(table, DIM), index, votes, judged, folds


def _fit(helpful: bool) -> tuple[dict[str, object], SteerParams]:
    encoder, index, votes, sets, folds = _world(helpful)
    qv = {q: encoder.table[q] for q in {v.query for v in votes}}
    return evaluate_steering(
        votes,
        [[v for v in votes if folds[v.query] == f] for f in (0, 1)],
        folds.__getitem__,
        sets,
        encoder=encoder,
        query_vectors=qv,
        index=index,
        version="v1-c1",
        mode="dense",
        params=MemoryParams(),
        docs=doc_vectors(index, "v1-c1", votes),
        now=1.0,
    )


def test_the_fit_turns_steering_on_when_related_questions_votes_help_held_out() -> None:
    section, shipped = _fit(helpful=True)
    assert shipped.enabled and shipped.radius in (0.6, 0.7, 0.8, 0.9), section["reasons"]
    rows = section["rows"]
    assert isinstance(rows, dict)
    held = rows["heldout"]
    assert held["with"]["n"] == 8 and held["with"]["ndcg@10"] > held["without"]["ndcg@10"]
    assert held["with"]["hit@5"] >= held["without"]["hit@5"]
    assert section["unseen_without"] < max(g["unseen"] for g in section["grid"])  # type: ignore[attr-defined]


def test_the_fit_ships_steering_off_when_votes_would_mislead_related_questions() -> None:
    section, shipped = _fit(helpful=False)
    assert shipped == SteerParams() and not shipped.enabled
    assert "shipped off" in " ".join(section["reasons"])  # type: ignore[arg-type]


# ---- over HTTP: a vote on one question steers a related, different one -----------------------------------------

DOCS = [
    {"id": "pipe.2", "title": "pipe(2)", "text": "pipe creates a pipe channel"},
    {"id": "fifo.7", "title": "fifo(7)", "text": "a fifo is a named pipe between processes"},
    {"id": "socketpair.2", "title": "socketpair(2)", "text": "socketpair makes a channel between two processes"},
    {"id": "open.2", "title": "open(2)", "text": "open a file and create it"},
    {"id": "mkfifo.3", "title": "mkfifo(3)", "text": "mkfifo makes a fifo special file"},
]


def _served(tmp_path: Path, steering: bool) -> tuple[object, http_api.Guard]:
    rt = fake_runtime(tmp_path, DOCS[0], memory_refresh_s=0, steering_enabled=steering)
    corpus = tmp_path / "more.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS[1:]))
    ingest(corpus, store=rt.store, index=rt.index, load_encoder=rt.load_encoder)
    # The fit a tune run would have shipped with v0's memory (no votes in it yet).
    now = time.time()  # the memory's epoch: votes' weights are kept relative to it
    fitted = VoteMemory("v0", 64, MemoryParams(), epoch=now, steering=SteerParams(0.5, 1.0, 1.0, 1.0, True))
    rt.store.put_bytes(memory_key("v0"), dump_snapshot(fitted, as_of=now - 60))
    return rt, http_api.Guard.from_settings(rt.settings, clock=lambda: 0.0)


def _post(rt: object, guard: http_api.Guard, route: str, body: dict[str, object]) -> dict[str, object]:
    handler = http_api.ask if route == "ask" else http_api.feedback
    resp = handler(rt, http_api.HttpRequest(json.dumps(body).encode(), {}, "203.0.113.9"), guard)  # type: ignore[arg-type]
    assert resp.status in (200, 201), resp.body
    return json.loads(resp.body)  # type: ignore[no-any-return]


@pytest.mark.parametrize("steering", [True, False])
def test_a_vote_on_a_question_reorders_a_related_but_different_question_over_http(
    tmp_path: Path, steering: bool
) -> None:
    rt, guard = _served(tmp_path, steering)
    asked = "make a pipe channel between two processes"
    related = "make a pipe channel between processes quickly"  # not the same question: the memory leaves it be
    before = _post(rt, guard, "ask", {"query": related, "top_k": 5})
    assert before["steered"] is False
    ranked = [c["doc_id"] for c in before["citations"]]  # type: ignore[union-attr]
    first = _post(rt, guard, "ask", {"query": asked, "top_k": 5})
    shown = [c["doc_id"] for c in first["citations"]]  # type: ignore[union-attr]
    liked = shown[-1]  # the user found the answer at the bottom, and the top one useless
    for doc, vote in ((liked, "up"), (shown[0], "down")):
        _post(rt, guard, "feedback", {"query_id": first["query_id"], "doc_id": doc, "vote": vote, "user_id": "u1"})

    after = _post(rt, guard, "ask", {"query": related, "top_k": 5})
    now_ranked = [c["doc_id"] for c in after["citations"]]  # type: ignore[union-attr]
    assert not any(c["boosted"] for c in after["citations"])  # type: ignore[union-attr]
    if steering:
        assert after["steered"] is True
        assert now_ranked.index(liked) < ranked.index(liked)
        assert now_ranked.index(shown[0]) > ranked.index(shown[0])
    else:
        assert after["steered"] is False and now_ranked == ranked


def test_one_lookup_gives_the_boosts_and_the_steering_that_separate_searches_give() -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((30, 16)).astype(np.float32)
    texts = [f"question {i}" for i in range(30)]
    votes = [
        MemoryVote(t, f"doc{(i * 7 + k) % 11}", f"u{i}", k == 0, 1.0, f"doc{(i * 7 + k) % 11}#0")
        for i, t in enumerate(texts)
        for k in range(3)
    ]
    mem = build_memory("v0", votes, dict(zip(texts, base, strict=True)), 16, MemoryParams(threshold=0.9), 0.0, ON)
    mem.doc_vectors.update({f"doc{j}": unit(*rng.standard_normal(16)) for j in range(11)})
    seen = [0, 0]
    for i in range(30):
        q = unit(
            *(base[i] / np.linalg.norm(base[i]) + (0.05 + 0.01 * i) * rng.standard_normal(16))
        )  # encoders give unit vectors
        boosts, steer = mem.lookup(q, 1.0)
        assert boosts == pytest.approx(mem.boosts(q, 1.0), abs=1e-6)
        seen[0] += bool(boosts)
        seen[1] += steer is not None
        alone = mem.steer(q, 1.0)
        assert (steer is None) == (alone is None)
        if steer is not None and alone is not None:
            assert steer.questions == alone.questions and steer.confidence == pytest.approx(alone.confidence)
            np.testing.assert_allclose(steer.positive, alone.positive, atol=1e-6)
    assert seen[0] > 0 and seen[1] > seen[0]  # both searches found rows, the radius more than the threshold


def test_the_live_memory_looks_voted_chunks_up_in_the_serving_version_once() -> None:
    from rag_autotune.domain import Citation, QueryLog, VersionPair
    from rag_autotune.memory import open_live_memory
    from tests.fakes import TOKENS, HashEncoder, MemoryArtifactStore, MemoryFeedbackStore
    from tests.unit.memory.support import vote_on

    fb, enc, asked = MemoryFeedbackStore(), HashEncoder("v0"), []
    cited = (Citation("open.2", "open.2#0", "open", "", 0.5, 1), Citation("gone.2", "gone.2#0", "gone", "", 0.4, 2))
    now = time.time()
    shown = TOKENS.issue(QueryLog("q1", "open a file", VersionPair("v0", "v0-c1"), cited, now, "c1"))
    for doc in ("open.2", "gone.2"):
        vote_on(fb, shown, doc, "up", at=now)

    def chunk_vectors(version: str, ids: Sequence[str]) -> dict[str, Vectors]:
        asked.append((version, sorted(ids)))
        return {"open.2#0": unit(*([1.0] + [0.0] * 63))} if "open.2#0" in ids else {}

    snapshot = VoteMemory("v0", 64, MemoryParams(), epoch=now, steering=ON)
    store = MemoryArtifactStore()
    store.put_bytes(memory_key("v0"), dump_snapshot(snapshot, as_of=now - 60))
    live = open_live_memory(store, fb, enc, MemoryParams(), refresh_s=0, background=False, chunk_vectors=chunk_vectors)
    assert asked == []  # the serving version is not known yet
    live.serve_from("v0-c1")
    assert asked == [("v0-c1", ["gone.2#0", "open.2#0"])]
    assert set(live.memory.doc_vectors) == {"open.2"}
    live.refresh()
    assert len(asked) == 1  # a chunk the version does not hold is not asked for on every refresh
    live.serve_from("v0-c2")  # a new index version of the same encoder (an ingest): asked again there
    assert asked[-1] == ("v0-c2", ["gone.2#0"])
    off = open_live_memory(
        store, fb, enc, MemoryParams(), refresh_s=0, background=False, chunk_vectors=chunk_vectors, steering=False
    )
    off.serve_from("v0-c1")
    assert len(asked) == 2 and off.steering is False  # RAG_STEERING_ENABLED=false: nothing looked up
