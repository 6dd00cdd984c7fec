"""The vote rules (memory/rules.py): threshold, decay, one vote per voter, the daily cap, the penalty floor."""

from __future__ import annotations

import pytest

from rag_autotune.domain import Chunk, Hit
from rag_autotune.memory import DAY_S, VoteMemory
from rag_autotune.memory.rules import rerank
from tests.unit.memory.support import T0, P, mv, vec


def test_boost_applies_only_above_threshold_up_and_down() -> None:
    mem = VoteMemory("v0", 64, P, epoch=T0)
    mem.add(mv("create a pipe", "pipe.2"), vec("create a pipe"))
    mem.add(mv("create a pipe", "open.2", up=False), None)  # the row is known: no vector needed
    near = mem.boosts(vec("create a pipe"), T0)
    assert near["pipe.2"] == pytest.approx(1.0) and near["open.2"] == pytest.approx(-0.9)  # -1.0, capped
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


def test_a_memory_decades_past_its_epoch_keeps_counting_votes_with_the_same_weights() -> None:
    """Weights are stored relative to the epoch: a vote 40 years of 7-day half-lives later would be 2^2087 and
    overflow, so the epoch moves, and relative weights, cancelling and latest-wins stay as they were."""
    years = 40 * 365 * DAY_S
    mem = VoteMemory("v0", 64, P, epoch=T0 - years)
    mem.add(mv("create a pipe", "pipe.2", voter="a", t=T0 - 7 * DAY_S), vec("create a pipe"))
    mem.add(mv("create a pipe", "fifo.7", voter="b", t=T0))
    b = mem.boosts(vec("create a pipe"), T0)
    assert b["fifo.7"] == pytest.approx(1.0, rel=1e-3) and b["pipe.2"] == pytest.approx(b["fifo.7"] / 2)
    assert mem.epoch > T0 - years
    mem.add(mv("create a pipe", "fifo.7", voter="b", up=False, t=T0 + 1))  # changed their mind
    mem.add(mv("create a pipe", "fifo.7", voter="c", up=True, t=T0 + 1))  # another's 👍 cancels it
    assert "fifo.7" not in mem.boosts(vec("create a pipe"), T0 + 1)


def test_one_voter_counts_once_latest_wins_and_opposites_cancel() -> None:
    mem = VoteMemory("v0", 64, P, epoch=T0)
    q = "create a pipe"
    for i in range(5):  # the same 👍 five times: once
        mem.add(mv(q, "pipe.2", voter="a", t=T0 + i), vec(q))
    assert len(mem) == 1 and mem.boosts(vec(q), T0 + 5)["pipe.2"] == pytest.approx(1.0, rel=1e-3)
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


@pytest.mark.parametrize("scale", [0.3, 2.0, 0.02])  # cosine-, DBSF- and RRF-like ranges of scores
def test_a_boost_moves_a_document_as_far_whatever_the_scores_range(scale: float) -> None:
    """Boosts count in spreads of the candidates' scores: the same votes give the same order in a list of
    cosines as in one of fused scores, six times wider or ten times narrower."""
    hits = [Hit(Chunk(f"{d}#0", d, d, d), scale * s) for d, s in (("a", 1.0), ("b", 0.8), ("c", 0.5), ("d", 0.0))]
    hits.append(Hit(Chunk("a#1", "a", "a", "a"), scale * 0.9))  # a second chunk of a: its best one counts
    order = [h.chunk.doc_id for h, _ in rerank(hits, {"a": -0.9, "c": 0.4})]
    assert order == ["c", "b", "a", "d"]  # a: 1 - 0.9 below c: 0.5 + 0.4 and b: 0.8, above d
    assert [h.chunk.doc_id for h, _ in rerank(hits, {})] == ["a", "b", "c", "d"]  # no votes: the engine's order
    scored = rerank(hits, {"c": 0.4})
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)
    assert scored[0][1] == pytest.approx(scale)  # a's score is the engine's: only boosted documents move
