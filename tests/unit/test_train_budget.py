"""Issue 13.1: the train step's time budget (tune/budget.py), on crafted data and a fake clock.

How the budget is derived, when the watch stops a run, how many steps fit, and which triplets are kept when
not all fit: newest first, every query represented, hard negatives kept (property tests, hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_autotune.domain import VersionPair, Vote
from rag_autotune.tune.budget import (
    PACE_MARGIN,
    TRAIN_RESERVE_S,
    BudgetWatch,
    TrainBudgetTooSmall,
    choose_triplets,
    steps_that_fit,
    train_budget_s,
    triplet_capacity,
)
from rag_autotune.tune.dataset import Triplet, group_votes, triplets

FAST = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _run(watch: BudgetWatch, clock: Clock, step_s: list[float], total: int) -> int:
    """Drive the watch like train_lora does; returns the steps done when it stopped (or total)."""
    watch(0, total)
    for done in range(1, total + 1):
        clock.t += step_s[min(done - 1, len(step_s) - 1)]
        if watch(done, total):
            return done
    return total


# ---------------------------------------------------------------- the budget


def test_the_budget_is_the_setting_or_the_remaining_time_less_the_reserve() -> None:
    assert train_budget_s(300.0, 900.0) == 300.0
    assert train_budget_s(None, 900.0) == 900.0 - TRAIN_RESERVE_S
    assert train_budget_s(None, 60.0) < 0  # the train step turns this into TrainBudgetTooSmall
    with pytest.raises(TrainBudgetTooSmall, match="RAG_TUNE_TRAIN_BUDGET_S"):
        train_budget_s(None, None)


def test_the_template_leaves_the_reserve_inside_the_train_functions_timeout() -> None:
    from rag_autotune.local.resources import load_template
    from rag_autotune.paths import TEMPLATE

    timeout = load_template(TEMPLATE)["Resources"]["TuneTrainFunction"]["Properties"]["Timeout"]
    assert train_budget_s(None, float(timeout)) >= timeout / 2  # training keeps most of the function's time


# ---------------------------------------------------------------- the watch


def test_a_run_that_fits_is_never_stopped() -> None:
    clock = Clock()
    watch = BudgetWatch(clock, deadline=clock.t + 100)
    assert _run(watch, clock, [5.0, 1.0], total=50) == 50
    assert watch.stopped is None and watch.measured
    assert watch.seconds_per_step == pytest.approx(1.0)  # the warm-up step is not timed


def test_a_run_over_budget_stops_once_the_pace_is_measured() -> None:
    clock = Clock()
    watch = BudgetWatch(clock, deadline=clock.t + 100)
    done = _run(watch, clock, [5.0, 2.0], total=200)
    assert done == watch.warmup + watch.timed and watch.stopped == "over budget"
    assert watch.seconds_per_step == pytest.approx(2.0)


def test_without_replanning_the_watch_stops_before_the_step_that_would_cross_the_deadline() -> None:
    clock = Clock()
    start = clock.t
    watch = BudgetWatch(clock, deadline=start + 30, replan=False)
    done = _run(watch, clock, [2.0], total=200)
    assert watch.stopped == "deadline"
    assert clock.t <= start + 30 and clock.t + 2.0 * PACE_MARGIN > start + 30
    assert done < 200


def test_a_warmup_step_longer_than_the_budget_stops_at_once() -> None:
    clock = Clock()
    watch = BudgetWatch(clock, deadline=clock.t + 10)
    assert _run(watch, clock, [8.0, 1.0], total=5) == 1
    assert watch.stopped == "deadline" and watch.seconds_per_step == pytest.approx(8.0)


def test_steps_and_triplets_that_fit() -> None:
    assert steps_that_fit(100.0, 2.0) == int(100 / (2.0 * PACE_MARGIN))
    assert steps_that_fit(1.0, 2.0) == 0
    assert steps_that_fit(-5.0, 2.0) == 0
    assert triplet_capacity(10, 32, 1) == 320
    assert triplet_capacity(10, 32, 2) == 160
    with pytest.raises(ValueError):
        steps_that_fit(10.0, 0.0)


# ---------------------------------------------------------------- which triplets to keep


def _t(query: str, at: float, hard: bool = True, n: int = 0) -> Triplet:
    return Triplet(query, f"pos {query} {n}", f"neg {query} {n}", hard, at)


def test_crafted_choice_newest_first_every_query_then_hard_negatives() -> None:
    rows = [
        _t("old", 1.0, hard=False, n=0),
        _t("old", 2.0, hard=True, n=1),
        _t("mid", 5.0, hard=False, n=0),
        _t("mid", 6.0, hard=False, n=1),
        _t("new", 9.0, hard=True, n=0),
        _t("new", 8.0, hard=True, n=1),
        _t("new", 10.0, hard=False, n=2),
    ]
    two = choose_triplets(rows, 2)  # fewer slots than queries: the two newest queries
    assert {t.query for t in two.kept} == {"new", "mid"}
    assert [t for t in two.kept if t.query == "new"] == [rows[4]]  # its newest hard one, not its newest
    four = choose_triplets(rows, 4)  # one per query, then the newest remaining hard negative
    assert four.kept == [rows[1], rows[3], rows[4], rows[5]]
    assert four.left == [rows[0], rows[2], rows[6]]
    assert choose_triplets(rows, 99).kept == rows and choose_triplets(rows, 99).left == []
    assert choose_triplets(rows, 0).kept == [] and choose_triplets(rows, 0).left == rows
    assert four.counts() == {
        "triplets_used": 4,
        "triplets_left": 3,
        "queries_used": 3,
        "queries_left": 0,
        "hard_negatives_used": 3,
    }


_rows = st.lists(
    st.builds(
        Triplet,
        query=st.sampled_from([f"q{i}" for i in range(5)]),
        positive=st.just(""),
        negative=st.just(""),
        hard=st.booleans(),
        at=st.integers(0, 20).map(float),
    ),
    min_size=1,
    max_size=30,
).map(lambda rows: [replace(r, positive=f"p{i}") for i, r in enumerate(rows)])  # each row told apart


@FAST
@given(rows=_rows, data=st.data())
def test_the_choice_partitions_the_rows_and_keeps_what_the_issue_asks_for(
    rows: list[Triplet], data: st.DataObject
) -> None:
    capacity = data.draw(st.integers(0, len(rows) + 2), label="capacity")
    chosen = choose_triplets(rows, capacity)
    kept_ids = _ids(rows, chosen.kept)
    left_ids = _ids(rows, chosen.left)
    assert sorted(kept_ids + left_ids) == list(range(len(rows)))  # a partition, each part in input order
    assert kept_ids == sorted(kept_ids) and left_ids == sorted(left_ids)
    assert len(chosen.kept) == min(capacity, len(rows))

    queries = {t.query for t in rows}
    kept_queries = {t.query for t in chosen.kept}
    if capacity >= len(queries):
        assert kept_queries == queries  # every query represented
    else:  # as many queries as fit, the newest ones
        assert len(kept_queries) == capacity
        newest = {q: max(t.at for t in rows if t.query == q) for q in queries}
        for q in queries - kept_queries:
            assert all(newest[q] <= newest[k] for k in kept_queries)

    # Beyond one triplet per query: a hard negative is left only when no random-negative triplet is kept
    # beyond its query's first, and within a kind nothing left is newer than what was kept.
    extras = _beyond_first_per_query(chosen.kept)
    if any(not t.hard for t in extras):
        assert all(not t.hard for t in chosen.left)
    for hard in (True, False):
        kept_at = [t.at for t in extras if t.hard is hard]
        left_at = [t.at for t in chosen.left if t.hard is hard and t.query in kept_queries]
        if kept_at and left_at and len(kept_queries) == len(queries):
            assert max(left_at) <= min(kept_at)


def _ids(rows: list[Triplet], part: list[Triplet]) -> list[int]:
    return [int(t.positive[1:]) for t in part]


def _beyond_first_per_query(kept: list[Triplet]) -> list[Triplet]:
    """`kept` less each query's representative: its newest hard triplet, else its newest (first on ties)."""
    out = list(kept)
    for q in {t.query for t in kept}:
        mine = [t for t in out if t.query == q]
        out.remove(max(mine, key=lambda t: (t.hard, t.at, -int(t.positive[1:]))))
    return out


# ---------------------------------------------------------------- the dates come from the votes


def test_triplets_carry_the_time_of_their_newest_vote() -> None:
    pair = VersionPair("v0", "v0-g0")
    votes = [
        Vote("q1", "d1", "c1", "up", 1, "what is x", pair, 10.0),
        Vote("q1", "d2", "c2", "down", 2, "what is x", pair, 30.0),
        Vote("q2", "d3", "c3", "up", 1, "what is y", pair, 20.0),
    ]
    texts = {"c1": "x is one", "c2": "y is two", "c3": "y is three"}
    rows = triplets(list(group_votes(votes).values()), texts.get, ["filler"], seed=0)
    by_query = {t.query: t for t in rows}
    assert by_query["what is x"].hard and by_query["what is x"].at == 30.0
    assert not by_query["what is y"].hard and by_query["what is y"].at == 20.0
