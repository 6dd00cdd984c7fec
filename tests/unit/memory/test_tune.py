"""The gate's choice of memory settings, and the smoke step that evaluates the memory and ships it."""

from __future__ import annotations

import json
from typing import Any

from rag_autotune.memory import VoteMemory, load_snapshot, memory_key
from rag_autotune.settings import Settings
from rag_autotune.tune import fanout, steps
from rag_autotune.tune.dataset import is_heldout
from rag_autotune.tune.gate import MemoryPoint, choose_memory, memory_verdict
from rag_autotune.tune.state import RunStart
from tests.unit.memory.support import T0, Clock, log_vote


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


def _six_voted_questions(w: dict[str, Any]) -> list[str]:
    """Six questions, each voted 👍 on its document and 👎 on the one before; their relevant documents."""
    qs = ["make a pipe", "open a file", "allocate memory", "named pipe fifo", "connected sockets", "create file"]
    relevant = ["pipe.2", "open.2", "malloc.3", "fifo.7", "socketpair.2", "open.2"]
    for i, (q, d) in enumerate(zip(qs, relevant, strict=True)):
        log_vote(w["fb"], q, d, "up", T0 + i, client_id=f"c{i}")
        log_vote(w["fb"], q, relevant[i - 1], "down", T0 + i + 0.5, client_id=f"c{i}")
    return relevant


def _tune_to_smoke(w: dict[str, Any]) -> dict[str, Any]:
    """Prepare → embed → smoke of a run whose candidate is encoder v1; the report's memory section."""
    settings = Settings(tune_min_feedback=3, tune_heldout_fraction=0.3, tune_margin=-1.0)
    kw: dict[str, Any] = {"store": w["store"], "index": w["index"]}
    kw["now"] = lambda: T0 + 30
    state = steps.prepare(RunStart(run_id="r1"), feedback=w["fb"], settings=settings, **kw)
    assert state.status == "RUNNING"
    w["store"].put_bytes("models/v1/meta.json", b"{}")
    state = fanout.embed(state, load_encoder=w["encoders"].__getitem__, **kw)
    enc = w["encoders"].__getitem__
    # A timer that stands still: every latency sample is 0 ms, so the machine's speed decides nothing here.
    steps.smoke(state, load_encoder=enc, settings=settings, feedback=w["fb"], timer=Clock(), **kw)
    return json.loads(w["store"].get_bytes("runs/r1/report.json"))["memory"]  # type: ignore[no-any-return]


def _shipped(w: dict[str, Any], mem: dict[str, Any]) -> VoteMemory:
    snap, meta = load_snapshot(w["store"].get_bytes(memory_key("v1")))
    assert snap.model_version == "v1" and snap.dim == 32 and meta["reasons"] == mem["reasons"]
    assert (snap.params.threshold, snap.params.weight, snap.params.enabled) == (
        mem["threshold"],
        mem["weight"],
        mem["enabled"],
    )
    return snap


def test_smoke_evaluates_with_and_without_memory_and_ships_it_with_the_candidate(world: dict[str, Any]) -> None:
    w = world
    _six_voted_questions(w)
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
    assert load_snapshot(w["store"].get_bytes(memory_key("v1")))[1]["as_of"] == T0 + 5.5
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


def test_smoke_fits_vote_steering_reports_it_and_ships_it_in_the_snapshot(world: dict[str, Any]) -> None:
    w = world
    relevant = _six_voted_questions(w)
    steering = _tune_to_smoke(w)["steering"]
    assert {"radius", "a", "b", "c", "enabled", "reasons", "grid", "unseen_without"} <= set(steering)
    assert len(steering["grid"]) == 4 * 3 * 5
    snap, meta = load_snapshot(w["store"].get_bytes(memory_key("v1")))
    assert meta["steering"] == {k: steering[k] for k in ("radius", "a", "b", "c", "enabled")}
    assert snap.steering.enabled is steering["enabled"]
    # Every voted document's chunk is known, with its vector from the candidate's index (v1's 32 dimensions).
    assert set(snap.doc_chunks) == set(relevant)
    assert set(snap.doc_vectors) == set(relevant) and all(v.shape == (32,) for v in snap.doc_vectors.values())
    assert "Vote steering" in w["store"].get_bytes("runs/r1/report.html").decode()
