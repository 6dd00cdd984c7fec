"""The per-run learning-rate/epochs grid (tune/grid.py): its fold, its score, its choice and its budget
arithmetic. Pure: fake encoders, no torch (test_lora_train.py runs it inside the train step)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from rag_autotune.settings import Settings
from rag_autotune.tune import grid
from rag_autotune.tune.budget import PACE_MARGIN
from rag_autotune.tune.dataset import Triplet

DEFAULT = grid.GridPoint(1e-3, 1)


def _rows(queries: int, per_query: int = 2) -> list[Triplet]:
    return [
        Triplet(f"question {q}", f"answer {q}", f"near miss {q}.{n}", True, float(q))
        for q in range(queries)
        for n in range(per_query)
    ]


def test_the_default_is_always_scored_first_and_each_point_once() -> None:
    assert grid.points([(5e-4, 1), (1e-3, 1), (5e-4, 1), (1e-3, 2)], DEFAULT) == [
        DEFAULT,
        grid.GridPoint(5e-4, 1),
        grid.GridPoint(1e-3, 2),
    ]
    assert grid.points([], DEFAULT) == [DEFAULT]


def test_the_fold_splits_by_query_stably_and_near_its_fraction() -> None:
    rows = _rows(400)
    trained, scored = grid.fold(rows)
    assert sorted(trained + scored, key=rows.index) == rows  # a partition
    assert not {r.query for r in trained} & {r.query for r in scored}  # no scored query is trained on
    assert 0.18 < len({r.query for r in scored}) / 400 < 0.32
    assert grid.fold(list(reversed(rows)))[1] == list(reversed(scored))  # by query text, not position


def test_the_fold_is_not_the_held_out_split() -> None:
    from rag_autotune.tune.dataset import is_heldout

    queries = [f"question {q}" for q in range(400)]
    folded = {q for q in queries if is_heldout(grid.FOLD_SALT + q, grid.FOLD_FRACTION)}
    held = {q for q in queries if is_heldout(q, grid.FOLD_FRACTION)}
    assert folded != held and folded & held != folded


def test_a_fold_too_small_to_choose_says_why() -> None:
    trained, scored = grid.fold(_rows(12))
    assert "fewer than" in grid.too_small(trained, scored, batch_size=4)
    trained, scored = grid.fold(_rows(200))
    assert grid.too_small(trained, scored, batch_size=32) == ""
    assert "less than one batch" in grid.too_small(trained[:3], scored, batch_size=32)


def _encoder(good: bool) -> grid.Encode:
    """Texts → unit vectors: a question's own answer is nearest (good) or farthest (not good)."""

    def encode(texts: list[str]) -> np.ndarray:
        out = []
        for t in texts:
            q = int(t.split()[-1].split(".")[0])
            angle = q * 0.01 + (0.0 if t.startswith("question") or good else 3.0)
            if t.startswith("near miss"):
                angle += 1.0
            out.append([np.cos(angle), np.sin(angle)])
        return np.asarray(out, dtype=np.float32)

    return encode


def test_the_fold_score_rewards_ranking_each_answer_first() -> None:
    trained, scored = grid.fold(_rows(200))
    good = grid.fold_score(_encoder(True), trained, scored)
    bad = grid.fold_score(_encoder(False), trained, scored)
    assert good == pytest.approx(1.0)
    assert bad < 0.5


def test_a_point_replaces_the_default_only_when_it_leads_by_more_than_noise() -> None:
    other = grid.GridPoint(5e-4, 2)
    assert grid.best({DEFAULT: 0.70, other: 0.70 + grid.MIN_GAIN}, DEFAULT) == other
    assert grid.best({DEFAULT: 0.70, other: 0.70 + grid.MIN_GAIN / 2}, DEFAULT) == DEFAULT
    assert grid.best({other: 0.7, DEFAULT: 0.7}, DEFAULT) == DEFAULT
    assert grid.best({other: 0.6, DEFAULT: 0.7}, DEFAULT) == DEFAULT
    assert grid.best({other: 0.6}, DEFAULT) == other  # the default did not fit the budget: the best scored


def test_steps_and_what_fits_use_the_budgets_margin() -> None:
    assert grid.steps(65, 32, 2) == 6
    assert grid.fits(10.0, 6, 6 * 10.0 * PACE_MARGIN)
    assert not grid.fits(10.0, 6, 6 * 10.0 * PACE_MARGIN - 0.01)


def test_the_setting_is_a_json_list_of_learning_rate_and_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TUNE_TRAIN_GRID", "[[5e-4, 1], [1e-3, 2]]")
    assert Settings().tune_train_grid == [(5e-4, 1), (1e-3, 2)]
    monkeypatch.delenv("RAG_TUNE_TRAIN_GRID")
    assert Settings().tune_train_grid == []
    with pytest.raises(ValidationError, match="learning rate > 0"):
        Settings(tune_train_grid=[(0.0, 1)])
    with pytest.raises(ValidationError, match="epochs >= 1"):
        Settings(tune_train_grid=[(1e-3, 0)])
