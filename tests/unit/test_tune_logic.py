import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_autotune.domain import VersionPair, Vote
from rag_autotune.golden import GOLDEN_KEY
from rag_autotune.ingest import ingest
from rag_autotune.paths import ASL, REPO
from rag_autotune.settings import Settings
from rag_autotune.tune import fanout, steps
from rag_autotune.tune.dataset import group_votes, is_heldout, split, triplets
from rag_autotune.tune.gate import Decision, GateInput, decide
from rag_autotune.tune.latency import interleaved
from rag_autotune.tune.metrics import Judged, evaluate, hit_at, ndcg_at, paired_ndcg, precision_at
from rag_autotune.tune.runs import LOCK_KEY, RunLocked, acquire_lock, list_runs, read_progress, read_run, release_lock
from rag_autotune.tune.state import CleanupEvent, InvalidRunState, RunStart, RunState, StepError
from rag_autotune.versions import MANIFEST_KEY, read_manifest
from tests.fakes import HashEncoder, MemoryArtifactStore, MemoryFeedbackStore, MemoryVectorIndex


def test_metrics_by_hand() -> None:
    ranked = ["a", "x", "b", "y", "z"]
    assert precision_at(ranked, {"a", "b"}, 5) == pytest.approx(0.4)
    assert hit_at(ranked, {"b"}, 5) == 1.0 and hit_at(ranked, {"q"}, 5) == 0.0
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at(ranked, {"a", "b"}, 10) == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    out = evaluate(lambda q: ranked, [Judged("q", frozenset({"a"})), Judged("empty", frozenset())])
    assert out == {"p@5": 0.2, "hit@5": 1.0, "ndcg@10": 1.0, "n": 1}


def test_condensed_lists_score_only_what_the_votes_judged() -> None:
    """A ranking that surfaces documents nobody saw is not scored as if each were a miss (the smoke step's mode
    choice): condensed, "new" and "other" drop out and the 👍 document is first."""
    q = Judged("q", frozenset({"a"}), frozenset({"a", "x"}))
    surfacing = ["new", "other", "a", "x"]
    assert evaluate(lambda _: surfacing, [q])["ndcg@10"] == pytest.approx(0.5)
    assert evaluate(lambda _: surfacing, [q], condensed=True)["ndcg@10"] == 1.0
    second = evaluate(lambda _: ["x", "new", "a"], [q], condensed=True)["ndcg@10"]
    assert second == pytest.approx(1 / math.log2(3), abs=1e-4)
    golden = Judged("q", frozenset({"a"}))  # judged unknown: the full list counts
    assert evaluate(lambda _: surfacing, [golden], condensed=True)["ndcg@10"] == pytest.approx(0.5)


def test_paired_ndcg_by_hand() -> None:
    """Two queries: one unchanged, one whose 👍 page fell from first to second. The mean difference and its
    standard error are the sample's: mean d/2, sd |d|/√2, se sd/√2 = |d|/2."""
    qs = [Judged("same", frozenset({"a"})), Judged("fell", frozenset({"a"})), Judged("unjudged", frozenset())]
    before = {"same": ["a", "x"], "fell": ["a", "x"], "unjudged": ["a"]}
    after = {"same": ["a", "x"], "fell": ["x", "a"], "unjudged": ["x"]}
    d = 1 / math.log2(3) - 1
    p = paired_ndcg(before.__getitem__, after.__getitem__, qs)
    assert p.n == 2 and p.mean == pytest.approx(d / 2) and p.se == pytest.approx(abs(d) / 2)
    assert paired_ndcg(before.__getitem__, after.__getitem__, qs[1:2]).se == 0.0  # one query: no spread
    assert paired_ndcg(before.__getitem__, after.__getitem__, qs[2:]).n == 0
    # condensed: x is unjudged for this query and drops out, so the fall is not seen
    judged = [Judged("fell", frozenset({"a"}), frozenset({"a"}))]
    assert paired_ndcg(before.__getitem__, after.__getitem__, judged, condensed=True).mean == 0.0


def test_the_gate_does_not_count_what_nobody_saw_as_a_miss() -> None:
    """Live showed a and x (the votes: 👍 a, 👎 x). A candidate that brings up an unseen page first and still
    ranks a above x is judged equal on the voted sets; on a golden set (full judgments) the unseen page counts."""
    voted = [Judged("q", frozenset({"a"}), frozenset({"a", "x"}))]
    golden = [Judged("q", frozenset({"a"}))]
    out = steps.gate_metrics(lambda _: ["a", "x"], lambda _: ["unseen", "a", "x"], {"heldout": voted, "golden": golden})
    assert out["heldout"]["before"] == out["heldout"]["after"]
    assert out["golden"]["after"]["ndcg@10"] < out["golden"]["before"]["ndcg@10"]
    worse = steps.gate_metrics(lambda _: ["a", "x"], lambda _: ["x", "a"], {"heldout": voted})
    assert worse["heldout"]["after"]["ndcg@10"] < worse["heldout"]["before"]["ndcg@10"]


def test_judged_sets_hold_every_voted_document() -> None:
    from rag_autotune.tune.dataset import judged

    groups = group_votes([_vote("q", "a", "up", 1), _vote("q", "x", "down", 2), _vote("only down", "y", "down", 3)])
    (j,) = judged(list(groups.values()))
    assert (j.relevant, j.judged) == (frozenset({"a"}), frozenset({"a", "x"}))


def _vote(q: str, doc: str, kind: str, t: float) -> Vote:
    return Vote(f"id-{q}-{t}", doc, f"{doc}#0", kind, 1, q, VersionPair("v0", "v0-c1"), t)  # type: ignore[arg-type]


def test_grouping_latest_vote_wins() -> None:
    votes = [
        _vote("Open A File", "open.2", "up", 1),
        _vote("open a  file", "open.2", "down", 2),
        _vote("open a file", "creat.2", "up", 3),
    ]
    groups = group_votes(votes)
    assert list(groups) == ["open a file"]
    g = groups["open a file"]
    assert g.up == {"creat.2": "creat.2#0"} and g.down == {"open.2": "open.2#0"}


QUERIES = [f"how do I {verb} thing number {i}" for i in range(1000) for verb in ("open", "close")]


def _heldout_in_a_fresh_process(queries: list[str], fraction: float, hash_seed: int) -> list[bool]:
    """is_heldout computed by another interpreter, with its own string-hash seed (as the next night's Lambda)."""
    script = (
        "import json, sys\n"
        "from rag_autotune.tune.dataset import is_heldout\n"
        "print(json.dumps([is_heldout(q, float(sys.argv[1])) for q in json.load(sys.stdin)]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed), "PYTHONPATH": str(REPO / "layers" / "serve" / "python")}
    out = subprocess.run(
        [sys.executable, "-c", script, str(fraction)],
        input=json.dumps(queries),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [bool(x) for x in json.loads(out.stdout)]


def test_heldout_split_is_the_same_in_every_process() -> None:
    """A query judged held-out one night must stay held out the next (else the gate is judged on queries the
    candidate trained on): the split may not depend on the process, e.g. on Python's salted str hash."""
    here = [is_heldout(q, 0.2) for q in QUERIES]
    assert 0 < sum(here) < len(QUERIES)
    for seed in (0, 4242):
        assert _heldout_in_a_fresh_process(QUERIES, 0.2, seed) == here
    # The same question typed differently is one query: it falls on one side.
    for q in QUERIES[:200]:
        assert is_heldout(f" {q.upper()} ", 0.5) == is_heldout(q.replace(" ", "  "), 0.5) == is_heldout(q, 0.5)


def test_heldout_share_follows_the_fraction_and_only_grows_with_it() -> None:
    previous: set[str] = set()
    for fraction in (0.0, 0.05, 0.2, 0.3, 0.5, 0.8, 1.0):
        held = {q for q in QUERIES if is_heldout(q, fraction)}
        assert previous <= held, "raising the fraction moved a held-out query back into training"
        assert abs(len(held) / len(QUERIES) - fraction) < 0.03
        previous = held
    parts = split(group_votes([_vote(q, "d", "up", i) for i, q in enumerate(QUERIES[:200])]), 0.3)
    assert {g.query for g in parts.heldout} == {q for q in QUERIES[:200] if is_heldout(q, 0.3)}
    assert len(parts.train) + len(parts.heldout) == 200


def test_triplets_use_shown_chunk_text_and_hard_negatives() -> None:
    votes = [
        _vote("q1", "a", "up", 1),
        _vote("q1", "b", "down", 2),
        _vote("q1", "c", "down", 3),
        _vote("q2", "d", "up", 4),
        _vote("q3", "e", "down", 5),
    ]
    parts = split(group_votes(votes), 0.0)
    text = {"a#0": "A", "b#0": "B", "c#0": "C", "d#0": "D", "e#0": "E"}
    rows = triplets(parts.train, text.get, ["R1", "R2"], seed=1)
    q1 = [(t.positive, t.negative, t.hard) for t in rows if t.query == "q1"]
    assert q1 == [("A", "B", True), ("A", "C", True)]  # the 2nd 👎 goes beside the only 👍
    (q2,) = [t for t in rows if t.query == "q2"]
    assert q2.positive == "D" and q2.negative in {"R1", "R2"} and not q2.hard
    assert not [t for t in rows if t.query == "q3"]  # 👎 only: no anchor pair


def _metrics(heldout: tuple[float, float] | None, golden: tuple[float, float] | None = None) -> dict:  # type: ignore[type-arg]
    """before/after nDCG@10 per judged set, as the smoke step reports them (n > 0: queries were judged)."""
    sets = {"heldout": heldout, "golden": golden}
    return {
        name: {"before": {"ndcg@10": ba[0], "n": 3}, "after": {"ndcg@10": ba[1], "n": 3}}
        for name, ba in sets.items()
        if ba is not None
    }


def _decide(metrics: dict, p99_ms: float = 5.0) -> Decision:  # type: ignore[type-arg]
    # Values are binary fractions, so a boundary (gain == margin, drop == tolerance) is exact.
    return decide(GateInput(metrics, p99_ms=p99_ms, margin=0.25, golden_tolerance=0.125, p99_budget_ms=15.0))


def test_gate_passes_a_candidate_that_meets_every_threshold() -> None:
    assert _decide(_metrics((0.5, 0.75), golden=(0.75, 0.625)), p99_ms=15.0) == Decision(True, [])


def test_gate_rejects_a_held_out_gain_below_the_margin() -> None:
    d = _decide(_metrics((0.5, 0.6875)))
    assert not d.passed and len(d.reasons) == 1
    assert "held-out ndcg@10" in d.reasons[0] and "below the margin" in d.reasons[0]
    assert not _decide(_metrics((0.5, 0.375))).passed  # worse, obviously
    assert _decide(_metrics((0.5, 0.75))).passed  # exactly the margin


def test_gate_rejects_without_held_out_evidence() -> None:
    for metrics in ({}, {"heldout": {"before": {"ndcg@10": 0.0, "n": 0}, "after": {"ndcg@10": 1.0, "n": 0}}}):
        d = _decide(metrics)  # type: ignore[arg-type]
        assert not d.passed and len(d.reasons) == 1 and "no held-out queries" in d.reasons[0]
    assert not _decide(_metrics(None, golden=(0.5, 1.0))).passed  # a golden gain does not replace it


def test_gate_rejects_a_golden_drop_beyond_the_tolerance() -> None:
    d = _decide(_metrics((0.5, 1.0), golden=(0.75, 0.5)))
    assert not d.passed and len(d.reasons) == 1
    assert "golden ndcg@10 fell by 0.2500" in d.reasons[0] and "tolerance 0.1250" in d.reasons[0]
    assert _decide(_metrics((0.5, 1.0), golden=(0.75, 0.625))).passed  # exactly the tolerance
    unjudged = {**_metrics((0.5, 1.0)), "golden": {"before": {"ndcg@10": 1.0, "n": 0}, "after": {"n": 0}}}
    assert _decide(unjudged).passed  # no golden queries in the corpus: nothing to compare


def test_gate_rejects_a_p99_over_the_budget() -> None:
    d = _decide(_metrics((0.5, 1.0)), p99_ms=15.5)
    assert not d.passed and len(d.reasons) == 1
    assert "p99 15.50 ms is over the budget 15.00 ms" in d.reasons[0]


def test_gate_lists_every_failed_check() -> None:
    d = _decide(_metrics((0.5, 0.5), golden=(1.0, 0.0)), p99_ms=99.0)
    assert not d.passed and [r.split()[0] for r in d.reasons] == ["held-out", "golden", "encode+search"]


def _set(before: float, after: float, se: float, n: int = 20) -> dict:  # type: ignore[type-arg]
    """A judged set's before/after nDCG@10 with its per-query differences' mean and standard error."""
    return {
        "before": {"ndcg@10": before, "n": n},
        "after": {"ndcg@10": after, "n": n},
        "paired": {"n": n, "mean": after - before, "se": se},
    }


def _tie_gate(heldout: dict, repeated: dict | None) -> Decision:  # type: ignore[type-arg]
    metrics = {"heldout": heldout, **({"repeated": repeated} if repeated else {})}
    return decide(
        GateInput(metrics, p99_ms=5.0, margin=0.0, golden_tolerance=0.125, p99_budget_ms=15.0, tie_max_drop=0.0625)
    )


def test_gate_passes_a_held_out_tie_when_the_voted_questions_rose() -> None:
    """Held-out at its ceiling (0.9375 → 0.9375 - 1/64, inside 2 standard errors): the voted questions decide."""
    d = _tie_gate(_set(0.9375, 0.921875, se=0.015625), _set(0.75, 0.875, se=0.03125))
    assert d.passed and d.reasons == [] and len(d.notes) == 1
    assert "is a tie with the margin +0.0000" in d.notes[0] and "repeated ndcg@10 0.7500 → 0.8750" in d.notes[0]


def test_gate_rejects_a_tie_the_voted_questions_do_not_break() -> None:
    held = _set(0.9375, 0.921875, se=0.015625)
    for repeated in (None, _set(0.75, 0.8125, se=0.03125), _set(0.75, 0.75, se=0.0)):  # noise: +1/16 ≤ 2 × 1/32
        d = _tie_gate(held, repeated)
        assert not d.passed and d.notes == []
        assert "did not rise beyond their noise" in d.reasons[0]


def test_gate_rejects_a_held_out_drop_beyond_a_tie() -> None:
    repeated = _set(0.5, 1.0, se=0.0625)
    beyond_noise = _tie_gate(_set(0.9375, 0.875, se=0.015625), repeated)  # -1/16 > 2 × 1/64
    beyond_cap = _tie_gate(_set(0.9375, 0.8125, se=0.25), repeated)  # within noise, but -1/8 > the cap 1/16
    for d in (beyond_noise, beyond_cap):
        assert not d.passed and "below the margin" in d.reasons[0] and "beyond a tie" in d.reasons[0]
    assert not _tie_gate(_set(0.9375, 0.921875, se=0.015625, n=1), repeated).passed  # one query: no noise estimate


def test_gate_rejects_a_candidate_that_fell_on_the_voted_questions() -> None:
    d = _tie_gate(_set(0.5, 0.75, se=0.0625), _set(0.75, 0.5, se=0.0625))  # held-out gained; voted fell 4 se
    assert not d.passed and len(d.reasons) == 1 and "fell on the voted questions it trained on" in d.reasons[0]
    assert _tie_gate(_set(0.5, 0.75, se=0.0625), _set(0.75, 0.6875, se=0.0625)).passed  # a fall within noise


def test_run_lock() -> None:
    store = MemoryArtifactStore()
    acquire_lock(store, "r1", now=100)
    acquire_lock(store, "r1", now=101)  # the same run retrying Prepare
    with pytest.raises(RunLocked):
        acquire_lock(store, "r2", now=102)
    release_lock(store, "r2")  # not the holder: no effect
    with pytest.raises(RunLocked):
        acquire_lock(store, "r2", now=103)
    acquire_lock(store, "r3", now=100 + 7201)  # a stale lock is taken over
    release_lock(store, "r3")
    acquire_lock(store, "r2", now=104)


def CLOCK() -> float:  # after every vote below: the steps' durations and finish times are by this clock
    return 1000.0


DOCS = [
    ("pipe.2", "create a pipe channel with two file descriptors"),
    ("open.2", "open and possibly create a file by pathname"),
    ("malloc.3", "allocate and free dynamic memory"),
    ("signal.7", "overview of signals and their default actions"),
]


@pytest.fixture
def tune_world(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    store, index, fb = MemoryArtifactStore(), MemoryVectorIndex(), MemoryFeedbackStore()
    store.put_bytes("models/v0/meta.json", b"{}")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"id": i, "title": i, "text": t}) for i, t in DOCS))
    ingest(corpus, store=store, index=index, load_encoder=lambda v: HashEncoder(v))
    settings = Settings(tune_min_feedback=3, tune_heldout_fraction=0.5, tune_margin=0.0)
    return {"store": store, "index": index, "fb": fb, "settings": settings}


def _log_and_vote(fb: MemoryFeedbackStore, q: str, up: str, down: str, t: float) -> None:
    fb.record_vote(Vote(f"q{t}", up, f"{up}#0", "up", 1, q, VersionPair("v0", "v0-c1"), t), f"u{t}", 3600)
    fb.record_vote(Vote(f"q{t}", down, f"{down}#0", "down", 2, q, VersionPair("v0", "v0-c1"), t + 0.1), f"d{t}", 3600)


def test_prepare_skips_without_enough_feedback_and_releases_lock(tune_world: dict) -> None:  # type: ignore[type-arg]
    w = tune_world
    out = steps.prepare(
        RunStart(run_id="r1"), store=w["store"], feedback=w["fb"], index=w["index"], settings=w["settings"], now=CLOCK
    )
    assert out.status == "SKIPPED" and out.reason and "not enough feedback" in out.reason
    assert out.candidate is None and out.to_event()["status"] == "SKIPPED"  # what the ASL's Choice reads
    assert read_run(w["store"], "r1")["status"] == "SKIPPED"
    acquire_lock(w["store"], "r2", now=1)  # the lock was released


def test_whole_loop_with_fakes_then_cleanup_of_a_failed_run(tune_world: dict) -> None:  # type: ignore[type-arg]
    w = tune_world
    for i, q in enumerate(
        ["make a pipe", "open a file", "allocate memory", "signals overview", "pipe with descriptors", "create file"]
    ):
        _log_and_vote(w["fb"], q, DOCS[i % 4][0], DOCS[(i + 1) % 4][0], 10.0 + i)
    kw = {"store": w["store"], "index": w["index"]}
    state = steps.prepare(RunStart(run_id="r1"), feedback=w["fb"], settings=w["settings"], now=CLOCK, **kw)
    assert state.status == "RUNNING" and state.candidate == VersionPair("v1", "v1-c1")
    with pytest.raises(RunLocked):
        steps.prepare(RunStart(run_id="r2"), feedback=w["fb"], settings=w["settings"], now=CLOCK, **kw)
    w["store"].put_bytes("models/v1/meta.json", b"{}")  # what the train step uploads (last)
    current: list[str] = []

    def load_encoder(version: str) -> HashEncoder:  # called mid-step: the run record names the running step
        current.append(read_run(w["store"], "r1")["step"])
        return HashEncoder(version)

    state = fanout.embed(state, load_encoder=load_encoder, now=lambda: 20.0, **kw)
    assert w["index"].count("v1-c1") == 4
    assert read_progress(w["store"], "r1") == {"step": "embed", "done": 4, "total": 4, "unit": "chunk", "at": 20.0}
    state = steps.smoke(state, load_encoder=load_encoder, settings=w["settings"], now=CLOCK, timer=Ticks(0.001), **kw)
    assert state.status == "PASSED", state.reasons
    assert current == ["embed", "smoke", "smoke"]
    report = json.loads(w["store"].get_bytes("runs/r1/report.json"))
    assert report["latency_ms"]["samples"] >= 300 and report["latency_ms"]["candidate_p99"] == pytest.approx(1.0)
    assert "<svg" in w["store"].get_bytes("runs/r1/report.html").decode()
    steps.swap_step(state, settings=w["settings"], now=lambda: 50.0, **kw)
    manifest, _ = read_manifest(w["store"])  # type: ignore[misc]
    assert manifest.live == VersionPair("v1", "v1-c1") and manifest.previous[0] == VersionPair("v0", "v0-c1")
    assert manifest.updated_at == "1970-01-01T00:00:50+00:00"  # dated by the step's clock
    assert read_run(w["store"], "r1")["status"] == "SWAPPED"
    assert {r["run_id"]: r["status"] for r in list_runs(w["store"])} == {"r1": "SWAPPED", "r2": "FAILED"}

    # A second run fails in embed: cleanup removes its shadow, live stays v1.
    for i in range(3):
        _log_and_vote(w["fb"], f"another question {i}", "pipe.2", "open.2", 100.0 + i)
    state = steps.prepare(RunStart(run_id="r3"), feedback=w["fb"], settings=w["settings"], now=lambda: 99.0, **kw)
    assert state.counts.new_votes == 6 and state.shadow.model_version == "v2"
    w["index"].build("v2-c1", 64, [])  # a half-made shadow
    boom = StepError(error="RuntimeError", cause="boom")
    out = steps.cleanup(CleanupEvent(run_id="r3", run=state, error=boom), now=CLOCK, **kw)
    assert out.status == "FAILED" and "boom" in out.reason and out.removed == ("v2-c1", "v2")
    assert "v2-c1" not in w["index"].versions()
    assert read_manifest(w["store"])[0].live == VersionPair("v1", "v1-c1")  # type: ignore[index]
    acquire_lock(w["store"], "r4", now=1)


class Ticks:
    """A timer that advances `step` seconds at each reading: every latency sample is `step`, on any machine."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


class Priced:
    """The tune world's index, with each query costing `costs[version]` seconds on its own clock, which the smoke
    step reads as its latency timer: the samples are what the test sets, whatever the machine's speed."""

    def __init__(self, inner: MemoryVectorIndex, costs: dict[str, float]) -> None:
        self.inner, self.costs, self.t = inner, costs, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def query(self, version: str, vector: Any, text: str, limit: int, mode: Any) -> Any:
        self.t += self.costs[version]
        return self.inner.query(version, vector, text, limit, mode)

    def timer(self) -> float:
        return self.t


class IndifferentEncoder(HashEncoder):
    """A candidate that learnt nothing: every text is the same vector, so it ranks the corpus in index order."""

    def encode(self, texts: Any) -> Any:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[:, 0] = 1.0
        return out


REJECTIONS = {
    # case: (settings, the candidate's encoder, seconds per query of live and candidate, what the reason says)
    "no gain": ({"tune_margin": 0.5}, HashEncoder, (0.001, 0.001), "below the margin"),
    "worse on golden": ({"tune_margin": -1.0}, IndifferentEncoder, (0.001, 0.001), "golden ndcg@10 fell"),
    "slower than live": ({"tune_margin": -1.0}, HashEncoder, (0.010, 0.014), "1.40× live's 10.00 ms"),
    "over the backstop": ({"tune_margin": -1.0}, HashEncoder, (0.060, 0.060), "over the budget 50.00 ms"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_a_rejected_run_leaves_live_serving_and_storage_as_they_were(
    tune_world: dict,  # type: ignore[type-arg]
    case: str,
) -> None:
    """Smoke → REJECTED → the state machine's Reject branch (cleanup with the run state, no error): the manifest
    is byte for byte as it was, the candidate's model and index are gone, the lock is free."""
    changes, candidate_encoder, (live_s, cand_s), reason = REJECTIONS[case]
    w = tune_world
    store, index = w["store"], Priced(w["index"], {"v0-c1": live_s, "v1-c1": cand_s})
    settings = Settings(tune_min_feedback=3, tune_heldout_fraction=0.5, **changes)  # type: ignore[arg-type]
    # Golden questions the live model answers first time: the indifferent candidate ranks them lower.
    golden = [{"query": text, "relevant": [doc]} for doc, text in DOCS if doc in ("malloc.3", "signal.7")]
    store.put_bytes(GOLDEN_KEY, "\n".join(json.dumps(g) for g in golden).encode())
    for i, q in enumerate(["make a pipe", "open a file", "allocate memory", "signals overview", "create file"]):
        _log_and_vote(w["fb"], q, DOCS[i % 4][0], DOCS[(i + 1) % 4][0], 10.0 + i)

    def storage() -> tuple[Any, ...]:
        return (
            store.get_with_etag(MANIFEST_KEY),
            index.versions(),
            store.list_keys("models/"),
            store.head_etag(LOCK_KEY),
        )

    before = storage()
    encoders = {"v0": HashEncoder("v0"), "v1": candidate_encoder("v1")}
    kw = {"store": store, "index": index}
    state = steps.prepare(RunStart(run_id="r1", trigger="test"), feedback=w["fb"], settings=settings, now=CLOCK, **kw)
    store.put_bytes("models/v1/meta.json", b"{}")  # what the train step uploads (last)
    state = fanout.embed(state, load_encoder=encoders.__getitem__, now=CLOCK, **kw)
    assert "v1-c1" in index.versions() and store.head_etag(LOCK_KEY) is not None
    state = steps.smoke(state, load_encoder=encoders.__getitem__, settings=settings, now=CLOCK, timer=index.timer, **kw)
    assert state.status == "REJECTED" and len(state.reasons) == 1 and reason in state.reasons[0], state.reasons

    # Route the smoke step's output through the workflow's own Choice, as Step Functions would.
    asl = json.loads(ASL.read_text())["States"]
    gate = asl["GatePassed"]
    branch = next((c["Next"] for c in gate["Choices"] if c["StringEquals"] == state.status), gate["Default"])
    assert asl[branch]["Resource"] == "${CleanupFunctionArn}" and asl[asl[branch]["Next"]]["Type"] == "Succeed"
    event = CleanupEvent.from_event({"run_id": "r1", "trigger": "test", "run": state.to_event()})  # Init's + $.run
    out = steps.cleanup(event, now=CLOCK, **kw)

    assert out.status == "REJECTED" and reason in out.reason and set(out.removed) == {"v1-c1", "v1"}
    assert storage() == before
    assert read_manifest(store)[0].live == VersionPair("v0", "v0-c1")  # type: ignore[index]
    record = read_run(store, "r1")
    assert record["status"] == "REJECTED" and reason in record["reason"]
    assert json.loads(store.get_bytes("runs/r1/report.json"))["decision"]["passed"] is False  # kept, to read


def test_run_state_round_trips_through_json_as_the_asl_passes_it(tune_world: dict) -> None:  # type: ignore[type-arg]
    w = tune_world
    for i, q in enumerate(["make a pipe", "open a file", "allocate memory", "signals overview", "create file"]):
        _log_and_vote(w["fb"], q, DOCS[i % 4][0], DOCS[(i + 1) % 4][0], 10.0 + i)
    kw = {"store": w["store"], "index": w["index"]}
    state = steps.prepare(RunStart(run_id="r1"), feedback=w["fb"], settings=w["settings"], now=CLOCK, **kw)
    payload = json.loads(json.dumps(state.to_event()))  # what Step Functions stores in $.run and hands to Train
    assert set(payload) == {"run_id", "status", "live", "live_etag", "counts", "prefix", "candidate"}
    assert payload["status"] == "RUNNING" and payload["prefix"] == "runs/r1/"
    assert payload["live"] == {"model_version": "v0", "index_version": "v0-c1"}
    assert payload["candidate"] == {"model_version": "v1", "index_version": "v1-c1"}
    assert RunState.from_event(payload) == state and RunState.from_event(payload).to_event() == payload

    w["store"].put_bytes("models/v1/meta.json", b"{}")
    embedded = fanout.embed(RunState.from_event(payload), load_encoder=lambda v: HashEncoder(v), now=CLOCK, **kw)
    plan = {"items": "runs/r1/fanout/items.json", "shards": 1, "chunks": 4, "started_at": CLOCK()}
    assert embedded.to_event() == {**payload, "fanout": plan, "embedded": 4}  # steps add keys, keep the others


def _running() -> dict:  # type: ignore[type-arg]
    pair = {"model_version": "v0", "index_version": "v0-c1"}
    return {
        "run_id": "r1",
        "status": "RUNNING",
        "live": pair,
        "live_etag": '"e1"',
        "counts": {"votes": 6, "new_votes": 6},
        "prefix": "runs/r1/",
        "candidate": {"model_version": "v1", "index_version": "v1-c1"},
    }


@pytest.mark.parametrize(
    ("change", "fault"),
    [
        ({"candidate": None}, "needs a candidate"),  # RUNNING past Prepare, yet no candidate
        ({"live": "v0"}, "live"),
        ({"live": {"model_version": "v0"}}, "live.index_version"),
        ({"status": "DONE"}, "status"),
        ({"counts": {"votes": "many", "new_votes": 1}}, "counts.votes"),
        ({"embeded": 4}, "embeded: Extra inputs are not permitted"),  # a misspelt key is not dropped silently
        ({"run_id": None}, "run_id"),
    ],
)
def test_a_malformed_run_state_raises_invalid_run_state(change: dict, fault: str) -> None:  # type: ignore[type-arg]
    RunState.from_event(_running())  # the unchanged payload is valid
    event = {k: v for k, v in {**_running(), **change}.items() if v is not None}
    with pytest.raises(InvalidRunState, match=fault) as caught:
        RunState.from_event(event)
    assert type(caught.value).__name__ == "InvalidRunState"  # the name the Lambda error carries to the ASL


def test_cleanup_reads_the_whole_execution_state_and_validates_what_it_uses() -> None:
    init = {"run_id": "r1", "trigger": "schedule"}  # Prepare failed: no $.run, Init's keys beside $.error
    event = CleanupEvent.from_event({**init, "error": {"Error": "NotReady", "Cause": "nothing is live"}})
    assert event.run is None and event.error == StepError(error="NotReady", cause="nothing is live")
    assert CleanupEvent.from_event({**init, "run": _running()}).run == RunState.from_event(_running())
    with pytest.raises(InvalidRunState, match="run.candidate"):
        CleanupEvent.from_event({**init, "run": {**_running(), "candidate": "v1"}})
    with pytest.raises(InvalidRunState, match="RunStart: trigger"):
        RunStart.from_event({"run_id": "r1", "trigger": 3})
    with pytest.raises(InvalidRunState, match="RunStart: marker: Extra inputs"):
        RunStart.from_event({"run_id": "r1", "trigger": "cli", "marker": "x"})


def test_the_asl_never_retries_a_malformed_payload_and_catches_it_like_any_failure() -> None:
    asl = json.loads((REPO / "infra" / "tune.asl.json").read_text())["States"]
    for name in ("Cleanup", "Reject"):
        assert asl[name]["Retry"][0] == {"ErrorEquals": ["InvalidRunState"], "MaxAttempts": 0}
    item = asl["EmbedShards"]["ItemProcessor"]["States"]["EmbedShard"]
    for name, state in [(n, asl[n]) for n in ("Prepare", "Train", "Plan", "Assemble", "Smoke", "Swap")] + [
        ("EmbedShard", item)
    ]:
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert "InvalidRunState" not in retried and "States.ALL" not in retried, name
    for name in ("Prepare", "Train", "Plan", "EmbedShards", "Assemble", "Smoke", "Swap"):
        assert asl[name]["Catch"][-1] == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Cleanup"}


def test_the_embed_step_is_a_distributed_map_over_s3_keys() -> None:
    """Issue 13.2: Plan → a Distributed Map reading its item list from S3 (items are keys, never chunk text),
    as wide as the EmbedConcurrency parameter, each item retried → Assemble; no item failure tolerated."""
    asl = json.loads((REPO / "infra" / "tune.asl.json").read_text())["States"]
    assert (asl["Train"]["Next"], asl["TrainJob"]["Next"], asl["Plan"]["Next"]) == ("Plan", "Plan", "EmbedWidth")
    assert asl["EmbedWidth"]["Parameters"] == {"max.$": "States.StringToJson('${EmbedConcurrency}')"}
    fan = asl["EmbedShards"]
    assert fan["Type"] == "Map" and fan["Next"] == "Assemble" and asl["Assemble"]["Next"] == "Smoke"
    assert fan["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert fan["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket": "${ArtifactBucket}", "Key.$": "$.run.fanout.items"},
    }
    assert fan["MaxConcurrencyPath"] == "$.embed.max" and "ToleratedFailurePercentage" not in fan
    assert fan["ItemSelector"] == {"run.$": "$.run", "item.$": "$$.Map.Item.Value"}
    assert fan["ResultPath"] is None  # the parts are in S3: nothing of the items' results crosses the Map
    item = fan["ItemProcessor"]["States"]["EmbedShard"]
    assert item["Resource"] == "${EmbedFunctionArn}" and item["End"] is True
    assert {"UpstreamError", "Lambda.ServiceException"} <= set(item["Retry"][0]["ErrorEquals"])


def test_a_run_that_died_without_cleanup_is_reaped_by_the_next(tune_world: dict) -> None:  # type: ignore[type-arg]
    """A crash mid-embed with no Catch (Lambda killed, execution stopped): its shadow stays behind until the
    next run's Prepare removes it and marks the dead run FAILED. Live is untouched."""
    w = tune_world
    for i, q in enumerate(["make a pipe", "open a file", "allocate memory", "signals overview", "create file"]):
        _log_and_vote(w["fb"], q, DOCS[i % 4][0], DOCS[(i + 1) % 4][0], 10.0 + i)
    kw = {"store": w["store"], "index": w["index"]}
    state = steps.prepare(RunStart(run_id="dead"), feedback=w["fb"], settings=w["settings"], now=CLOCK, **kw)
    w["store"].put_bytes("models/v1/meta.json", b"{}")
    fanout.embed(state, load_encoder=lambda v: HashEncoder(v), now=CLOCK, **kw)  # ... and then the process died
    assert "v1-c1" in w["index"].versions()
    w["store"].delete_prefix("tune/lock.json")  # the lock went stale (or was released by an operator)
    live_before = read_manifest(w["store"])[0].live  # type: ignore[index]

    state = steps.prepare(RunStart(run_id="next"), feedback=w["fb"], settings=w["settings"], now=CLOCK, **kw)
    assert "v1-c1" not in w["index"].versions() and not w["store"].list_keys("models/v1/")
    dead = read_run(w["store"], "dead")
    assert dead["status"] == "FAILED" and "abandoned" in dead["reason"] and "next" in dead["reason"]
    assert dead["reason"].startswith("the step after embed: RunAbandoned: ")  # it died after embed finished
    assert read_run(w["store"], "next")["reaped"] == ["v1-c1", "v1"]
    assert read_manifest(w["store"])[0].live == live_before  # type: ignore[index]
    assert state.shadow.model_version == "v2"  # a dead run's number is not reused


def _smoke_world(w: dict, live_s: float, cand_s: float) -> tuple[RunState, Priced, dict[str, Any]]:  # type: ignore[type-arg]
    for i, q in enumerate(["make a pipe", "open a file", "allocate memory", "signals overview", "create file"]):
        _log_and_vote(w["fb"], q, DOCS[i % 4][0], DOCS[(i + 1) % 4][0], 10.0 + i)
    index = Priced(w["index"], {"v0-c1": live_s, "v1-c1": cand_s})
    kw = {"store": w["store"], "index": index}
    settings = Settings(tune_min_feedback=3, tune_heldout_fraction=0.5, tune_margin=-1.0)
    state = steps.prepare(RunStart(run_id="r1", trigger="test"), feedback=w["fb"], settings=settings, now=CLOCK, **kw)
    w["store"].put_bytes("models/v1/meta.json", b"{}")
    state = fanout.embed(state, load_encoder=HashEncoder, now=CLOCK, **kw)
    return state, index, {**kw, "settings": settings}


def test_a_slow_machine_does_not_reject_a_candidate_as_fast_as_live(tune_world: dict) -> None:  # type: ignore[type-arg]
    """Every query takes 40 ms, live's and the candidate's alike (a loaded machine): past the old absolute budget
    of 15 ms, yet the ratio is 1 and the backstop generous, so the gate passes."""
    state, index, kw = _smoke_world(tune_world, 0.040, 0.040)
    state = steps.smoke(state, load_encoder=HashEncoder, now=CLOCK, timer=index.timer, **kw)
    assert state.status == "PASSED", state.reasons
    latency = json.loads(tune_world["store"].get_bytes("runs/r1/report.json"))["latency_ms"]
    assert latency["candidate_p99"] == pytest.approx(40.0) and latency["live_p99"] == pytest.approx(40.0)
    assert latency["ratio"] == pytest.approx(1.0) and latency["samples"] >= 300


def test_the_gate_rejects_a_candidate_slower_than_live_beyond_the_ratio(tune_world: dict) -> None:  # type: ignore[type-arg]
    """Both fast in absolute terms (3 ms against 2 ms, far under the backstop), but the candidate is 1.5× live."""
    state, index, kw = _smoke_world(tune_world, 0.002, 0.003)
    state = steps.smoke(state, load_encoder=HashEncoder, now=CLOCK, timer=index.timer, **kw)
    assert state.status == "REJECTED" and len(state.reasons) == 1
    assert "1.50× live's 2.00 ms" in state.reasons[0] and "limit 1.30×" in state.reasons[0]


def test_latency_samples_alternate_sides_and_order() -> None:
    clock = [0.0]
    calls: list[str] = []

    def side(name: str, cost: float) -> Any:
        def run(query: str) -> None:
            calls.append(f"{name}:{query}")
            clock[0] += cost

        return run

    got = interleaved(side("c", 0.003), side("l", 0.001), ["a", "b"], n=4, timer=lambda: clock[0])
    assert calls == ["c:a", "l:a", "l:b", "c:b", "c:a", "l:a", "l:b", "c:b"]
    assert got.candidate == pytest.approx([3.0] * 4) and got.live == pytest.approx([1.0] * 4)
    assert got.ratio == pytest.approx(3.0)
