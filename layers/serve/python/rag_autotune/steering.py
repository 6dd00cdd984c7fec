"""Vote steering: the 👍/👎 documents of voted questions near a new one, fed into the search itself as relevance
feedback (Qdrant's Relevance Feedback query, naive strategy), so that votes help related questions and not only
the same question again (the feedback memory's job).

The engine's formula, for a candidate x, target q and feedback items (vector v_i, score s_i):

    score(x) = a·sim(q, x) + Σ over pairs (i, j) with s_i > s_j of  c·(s_i − s_j)^b · (sim(v_i, x) − sim(v_j, x))

qdrant-edge 0.9 and qdrant-client 1.20's local mode sum over every such pair; Qdrant's server source keeps at
most three (best with worst, then inwards). We always send exactly two items, one 👍 side and one 👎 side, so
every engine makes the same single pair and scores alike:

- the 👍 side is the unit mean of the 👍 documents' vectors, weighted by their net score, and the 👎 side the
  same for 👎 documents; a side with no documents is the target itself, scored 0 (so 👍 alone pulls the query
  toward them, 👎 alone pushes it away);
- a document's net score is Σ over the related voted questions of cosine × net votes (decayed like the
  memory's boosts), so more and closer votes steer harder, and `b` decides how fast.

`steered_scores` is the same formula in numpy: the in-memory index, the tune's fitting and the tests use it.
numpy only, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

_Vec = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SteerParams:
    """Fitted per encoder version by the tune's smoke step (shipped in the memory snapshot). `radius`: the
    cosine from which a voted question counts as related; below the memory's repeat threshold, so related but
    different questions steer too."""

    radius: float = 0.8
    a: float = 1.0
    b: float = 1.0
    c: float = 0.2
    enabled: bool = False  # only a fit that did not lower held-out turns it on

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> SteerParams:
        """A snapshot's stored params; a snapshot written before steering existed has none: off."""
        if not raw:
            return cls()
        return cls(
            radius=float(raw["radius"]),
            a=float(raw["a"]),
            b=float(raw["b"]),
            c=float(raw["c"]),
            enabled=bool(raw.get("enabled", False)),
        )


@dataclass(frozen=True)
class Steer:
    """One question's relevance feedback, as the engine takes it: target, one 👍 and one 👎 item, coefficients."""

    positive: _Vec  # unit vector
    positive_score: float
    negative: _Vec  # unit vector
    negative_score: float
    a: float
    b: float
    c: float
    questions: int  # related voted questions that steered

    @property
    def confidence(self) -> float:
        return self.positive_score - self.negative_score

    @property
    def weight(self) -> float:
        """The pair's factor c·(s⁺ − s⁻)^b."""
        return self.c * self.confidence**self.b


def _unit(v: _Vec) -> _Vec:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


def steer_from(
    target: _Vec,
    doc_scores: Mapping[str, float],
    doc_vectors: Mapping[str, _Vec],
    params: SteerParams,
    questions: int,
) -> Steer | None:
    """The feedback for a question from its related questions' net document scores (docs without a vector are
    left out); None when nothing is left to steer with."""
    q = np.asarray(target, dtype=np.float32).reshape(-1)
    pos = [(s, doc_vectors[d]) for d, s in doc_scores.items() if s > 0 and d in doc_vectors]
    neg = [(-s, doc_vectors[d]) for d, s in doc_scores.items() if s < 0 and d in doc_vectors]
    if not pos and not neg:
        return None

    def side(items: list[tuple[float, _Vec]]) -> tuple[_Vec, float]:
        if not items:
            return _unit(q), 0.0
        weights = np.fromiter((w for w, _ in items), dtype=np.float32, count=len(items))
        return _unit(weights @ np.stack([v for _, v in items]).astype(np.float32)), float(weights.sum())

    p, s_pos = side(pos)
    n, s_neg = side(neg)
    return Steer(p, s_pos, n, -s_neg, params.a, params.b, params.c, questions)


def steered_scores(target_sims: _Vec, positive_sims: _Vec, negative_sims: _Vec, steer: Steer) -> _Vec:
    """The naive formula over candidates whose cosines to the target and to both items are given."""
    return (steer.a * target_sims + steer.weight * (positive_sims - negative_sims)).astype(np.float32)


def steered_matrix_scores(matrix: _Vec, target: _Vec, steer: Steer) -> _Vec:
    """The formula over every row of a matrix of unit vectors (brute force, as an exact engine scan)."""
    q = _unit(np.asarray(target, dtype=np.float32).reshape(-1))
    return steered_scores(matrix @ q, matrix @ steer.positive, matrix @ steer.negative, steer)
