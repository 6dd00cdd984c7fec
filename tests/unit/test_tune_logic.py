import json
import math
from pathlib import Path

import pytest

from rag_autotune.domain import Citation, QueryLog, VersionPair, Vote
from rag_autotune.ingest import ingest
from rag_autotune.paths import REPO
from rag_autotune.settings import Settings
from rag_autotune.tune import steps
from rag_autotune.tune.dataset import group_votes, is_heldout, split, triplets
from rag_autotune.tune.gate import GateInput, decide
from rag_autotune.tune.metrics import Judged, evaluate, hit_at, ndcg_at, precision_at
from rag_autotune.tune.runs import RunLocked, acquire_lock, list_runs, read_progress, read_run, release_lock
from rag_autotune.tune.state import CleanupEvent, InvalidRunState, RunStart, RunState, StepError
from rag_autotune.versions import read_manifest
from tests.fakes import HashEncoder, MemoryArtifactStore, MemoryFeedbackStore, MemoryVectorIndex


def test_metrics_by_hand() -> None:
    ranked = ["a", "x", "b", "y", "z"]
    assert precision_at(ranked, {"a", "b"}, 5) == pytest.approx(0.4)
    assert hit_at(ranked, {"b"}, 5) == 1.0 and hit_at(ranked, {"q"}, 5) == 0.0
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at(ranked, {"a", "b"}, 10) == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    out = evaluate(lambda q: ranked, [Judged("q", frozenset({"a"})), Judged("empty", frozenset())])
    assert out == {"p@5": 0.2, "hit@5": 1.0, "ndcg@10": 1.0, "n": 1}


def _vote(q: str, doc: str, kind: str, t: float) -> Vote:
    return Vote(f"id-{q}-{t}", doc, f"{doc}#0", kind, 1, q, VersionPair("v0", "v0-c1"), t)  # type: ignore[arg-type]


def test_grouping_latest_vote_wins_and_split_is_deterministic() -> None:
    votes = [
        _vote("Open A File", "open.2", "up", 1),
        _vote("open a  file", "open.2", "down", 2),
        _vote("open a file", "creat.2", "up", 3),
    ]
    groups = group_votes(votes)
    assert list(groups) == ["open a file"]
    g = groups["open a file"]
    assert g.up == {"creat.2": "creat.2#0"} and g.down == {"open.2": "open.2#0"}
    qs = [f"query {i}" for i in range(400)]
    held = [q for q in qs if is_heldout(q, 0.2)]
    assert held == [q for q in qs if is_heldout(q, 0.2)]
    assert 50 < len(held) < 110


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


def _gate(before: float, after: float, **kw: float) -> bool:
    m = {"heldout": {"before": {"ndcg@10": before, "n": 3}, "after": {"ndcg@10": after, "n": 3}}}
    args = {"p99_ms": 5.0, "margin": 0.03, "golden_tolerance": 0.01, "p99_budget_ms": 15.0, **kw}
    return decide(GateInput(metrics=m, **args)).passed  # type: ignore[arg-type]


def test_gate() -> None:
    assert _gate(0.5, 0.54)
    assert not _gate(0.5, 0.52)
    assert not _gate(0.5, 0.6, p99_ms=20.0)
    golden_drop = {
        "golden": {"before": {"ndcg@10": 0.8, "n": 2}, "after": {"ndcg@10": 0.7, "n": 2}},
        "heldout": {"before": {"ndcg@10": 0.5, "n": 3}, "after": {"ndcg@10": 0.6, "n": 3}},
    }
    d = decide(GateInput(golden_drop, 5.0, 0.03, 0.01, 15.0))
    assert not d.passed and "golden" in d.reasons[0]
    assert not decide(GateInput({}, 1.0, 0.0, 0.01, 15.0)).passed  # no held-out evidence, no swap


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
    cites = tuple(Citation(d, f"{d}#0", d, "", 0.5, r) for r, d in enumerate((up, down), 1))
    fb.log_query(QueryLog(f"q{t}", q, VersionPair("v0", "v0-c1"), cites, t))
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

    state = steps.embed(state, load_encoder=load_encoder, now=lambda: 20.0, **kw)
    assert w["index"].count("v1-c1") == 4
    assert read_progress(w["store"], "r1") == {"step": "embed", "done": 4, "total": 4, "unit": "chunk", "at": 20.0}
    state = steps.smoke(state, load_encoder=load_encoder, settings=w["settings"], now=CLOCK, **kw)
    assert state.status == "PASSED", state.reasons
    assert current == ["embed", "smoke", "smoke"]
    report = json.loads(w["store"].get_bytes("runs/r1/report.json"))
    assert report["latency_ms"]["samples"] >= 300
    assert "<svg" in w["store"].get_bytes("runs/r1/report.html").decode()
    steps.swap_step(state, settings=w["settings"], now=lambda: 50.0, **kw)
    manifest, _ = read_manifest(w["store"])  # type: ignore[misc]
    assert manifest.live == VersionPair("v1", "v1-c1") and manifest.previous[0] == VersionPair("v0", "v0-c1")
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
    embedded = steps.embed(RunState.from_event(payload), load_encoder=lambda v: HashEncoder(v), now=CLOCK, **kw)
    assert embedded.to_event() == {**payload, "embedded": 4}  # a step adds its keys and keeps the others


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
    for name in ("Prepare", "Train", "Embed", "Smoke", "Swap"):
        retried = {e for r in asl[name]["Retry"] for e in r["ErrorEquals"]}
        assert "InvalidRunState" not in retried and "States.ALL" not in retried
        assert asl[name]["Catch"][-1] == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Cleanup"}


def test_a_run_that_died_without_cleanup_is_reaped_by_the_next(tune_world: dict) -> None:  # type: ignore[type-arg]
    """A crash mid-embed with no Catch (Lambda killed, execution stopped): its shadow stays behind until the
    next run's Prepare removes it and marks the dead run FAILED. Live is untouched."""
    w = tune_world
    for i, q in enumerate(["make a pipe", "open a file", "allocate memory", "signals overview", "create file"]):
        _log_and_vote(w["fb"], q, DOCS[i % 4][0], DOCS[(i + 1) % 4][0], 10.0 + i)
    kw = {"store": w["store"], "index": w["index"]}
    state = steps.prepare(RunStart(run_id="dead"), feedback=w["fb"], settings=w["settings"], now=CLOCK, **kw)
    w["store"].put_bytes("models/v1/meta.json", b"{}")
    steps.embed(state, load_encoder=lambda v: HashEncoder(v), now=CLOCK, **kw)  # ... and then the process died
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
