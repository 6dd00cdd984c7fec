"""The learning rate and epochs of one night's training, chosen per run from a small grid (RAG_TUNE_TRAIN_GRID).

Why per run: the best learning rate depends on the corpus and on how many votes arrived, and a setting that
gains on one corpus can lose on another. So each grid point trains a fresh adapter on most of the train
split's queries and is scored on the rest (the fold), and the final run trains on every triplet with the
point that scored best. The held-out split is never looked at: it stays the gate's.

Pure logic, no torch: train_step.py drives it with the models and an injected clock. The grid fits inside the
train step's time budget: once the first point has measured the pace, a point starts only if it and the
final run still fit; what was not scored is reported, never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .budget import PACE_MARGIN
from .dataset import Triplet, is_heldout
from .metrics import ndcg_at

FOLD_FRACTION = 0.25  # of the train split's queries, scored and not trained on by each grid point
FOLD_SALT = "grid-fold:"  # so the fold is not the held-out split's hash in disguise
MIN_FOLD_QUERIES = 8  # fewer cannot tell two points apart
# A point replaces the default only when it beats it by this much nDCG@10 on the fold: a fold of a few dozen
# queries moves by more than that when one query's ranking changes, and the default is the recipe measured
# across corpora, so a smaller lead is noise.
MIN_GAIN = 0.01

Encode = Callable[[list[str]], npt.NDArray[np.float32]]


@dataclass(frozen=True, order=True)
class GridPoint:
    lr: float
    epochs: int

    def as_dict(self) -> dict[str, float | int]:
        return {"lr": self.lr, "epochs": self.epochs}


def points(grid: Sequence[tuple[float, int]], default: GridPoint) -> list[GridPoint]:
    """The grid's points, the default first (so it is always scored), each once."""
    out = [default]
    for lr, epochs in grid:
        p = GridPoint(float(lr), int(epochs))
        if p not in out:
            out.append(p)
    return out


def fold(rows: Sequence[Triplet], fraction: float = FOLD_FRACTION) -> tuple[list[Triplet], list[Triplet]]:
    """(trained on, scored on), split by query: no scored query is ever trained on."""
    scored = [r for r in rows if is_heldout(FOLD_SALT + r.query, fraction)]
    return [r for r in rows if not is_heldout(FOLD_SALT + r.query, fraction)], scored


def too_small(trained: Sequence[Triplet], scored: Sequence[Triplet], batch_size: int) -> str:
    """Why this fold cannot choose a point ("" when it can)."""
    queries = len({r.query for r in scored})
    if queries < MIN_FOLD_QUERIES:
        return f"the fold holds {queries} quer(y/ies), fewer than {MIN_FOLD_QUERIES}"
    if len(trained) < batch_size:
        return f"{len(trained)} triplet(s) to train on, less than one batch of {batch_size}"
    return ""


def fold_score(encode: Encode, trained: Sequence[Triplet], scored: Sequence[Triplet]) -> float:
    """Mean nDCG@10 of each scored query's 👍 texts among every text the votes showed (both sides' 👍 and 👎:
    near misses the users really saw, not random text)."""
    pool = sorted({t for r in [*trained, *scored] for t in (r.positive, r.negative)})
    relevant: dict[str, set[str]] = {}
    for r in scored:
        relevant.setdefault(r.query, set()).add(r.positive)
    queries = sorted(relevant)
    sims = encode(queries) @ encode(pool).T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    return float(np.mean([ndcg_at([pool[i] for i in row], relevant[q]) for q, row in zip(queries, top, strict=True)]))


def steps(rows: int, batch_size: int, epochs: int) -> int:
    return math.ceil(rows / max(1, batch_size)) * max(1, epochs)


def fits(seconds_per_step: float, steps_ahead: int, seconds_left: float) -> bool:
    """Whether `steps_ahead` steps at the measured pace (stretched as the budget's planning is) end in time."""
    return steps_ahead * seconds_per_step * PACE_MARGIN <= seconds_left


def best(scores: Mapping[GridPoint, float], default: GridPoint) -> GridPoint:
    """The best-scoring point when it beats the default by MIN_GAIN; else the default (the recipe chosen across
    corpora), also when the default was not scored."""
    top = max(scores, key=lambda p: (scores[p], p == default))
    if default in scores and scores[top] < scores[default] + MIN_GAIN:
        return default
    return top
