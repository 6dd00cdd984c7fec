"""Ranking metrics with binary relevance: P@k, hit@k, nDCG@k."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def precision_at(ranked: Sequence[str], relevant: set[str], k: int = 5) -> float:
    return sum(1 for d in ranked[:k] if d in relevant) / k


def hit_at(ranked: Sequence[str], relevant: set[str], k: int = 5) -> float:
    return 1.0 if any(d in relevant for d in ranked[:k]) else 0.0


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal


@dataclass(frozen=True)
class Judged:
    query: str
    relevant: frozenset[str]
    judged: frozenset[str] = frozenset()  # every document with a vote, 👍 or 👎; empty: not known (golden sets)


def evaluate(
    rank: Callable[[str], Sequence[str]], queries: Sequence[Judged], *, condensed: bool = False
) -> dict[str, float]:
    """Mean P@5, hit@5 and nDCG@10 of `rank` (query → doc ids, best first) over queries with ≥1 relevant.

    condensed: each ranking keeps only the query's judged documents (a condensed list, Sakai 2007). Votes judge
    only what the live ranking showed, so a ranking that surfaces other documents is otherwise scored as if
    every one of them were irrelevant: that favours whatever ranks like the live model."""
    scored = [q for q in queries if q.relevant]
    if not scored:
        return {"p@5": 0.0, "hit@5": 0.0, "ndcg@10": 0.0, "n": 0}
    sums = {"p@5": 0.0, "hit@5": 0.0, "ndcg@10": 0.0}
    for q in scored:
        ranked = _ranked(rank, q, condensed)
        rel = set(q.relevant)
        sums["p@5"] += precision_at(ranked, rel, 5)
        sums["hit@5"] += hit_at(ranked, rel, 5)
        sums["ndcg@10"] += ndcg_at(ranked, rel, 10)
    return {**{k: round(v / len(scored), 4) for k, v in sums.items()}, "n": len(scored)}


def _ranked(rank: Callable[[str], Sequence[str]], q: Judged, condensed: bool) -> Sequence[str]:
    ranked = rank(q.query)
    if condensed and q.judged:
        return [d for d in ranked if d in q.judged or d in q.relevant]
    return ranked


@dataclass(frozen=True)
class Paired:
    """nDCG@10 of two rankings of the same queries, compared query by query."""

    n: int
    mean: float  # mean of after − before over the queries with ≥1 relevant
    se: float  # its standard error: the sample deviation of the differences over √n (0 below two queries)

    def as_dict(self) -> dict[str, float]:
        return {"n": self.n, "mean": round(self.mean, 4), "se": round(self.se, 4)}


def paired_ndcg(
    before: Callable[[str], Sequence[str]],
    after: Callable[[str], Sequence[str]],
    queries: Sequence[Judged],
    *,
    condensed: bool = False,
) -> Paired:
    """The per-query nDCG@10 differences of `after` over `before`: their mean and its standard error, which says
    how far the mean moves when a few queries rank differently (the gate's tie, tune/gate.py)."""
    diffs = [
        ndcg_at(_ranked(after, q, condensed), set(q.relevant)) - ndcg_at(_ranked(before, q, condensed), set(q.relevant))
        for q in queries
        if q.relevant
    ]
    n = len(diffs)
    if n == 0:
        return Paired(0, 0.0, 0.0)
    mean = sum(diffs) / n
    if n < 2:
        return Paired(n, mean, 0.0)
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return Paired(n, mean, math.sqrt(var / n))


def first_relevant_rank(ranked: Sequence[str], relevant: frozenset[str]) -> int | None:
    """1-based rank of the best-placed relevant document, None when none is in `ranked`."""
    return next((i + 1 for i, d in enumerate(ranked) if d in relevant), None)


@dataclass(frozen=True)
class Move:
    query: str
    before: int  # rank of the best 👍 document; depth + 1 when it was not retrieved at all
    after: int

    @property
    def gain(self) -> int:
        return self.before - self.after


def movers(
    before: Callable[[str], Sequence[str]],
    after: Callable[[str], Sequence[str]],
    queries: Sequence[Judged],
    depth: int,
    n: int = 10,
) -> tuple[list[Move], list[Move]]:
    """(up, down): the n queries whose best 👍 document rose most, and the n where it fell most."""
    seen: set[str] = set()
    moves: list[Move] = []
    for q in queries:
        if not q.relevant or q.query in seen:
            continue
        seen.add(q.query)
        b = first_relevant_rank(before(q.query), q.relevant) or depth + 1
        a = first_relevant_rank(after(q.query), q.relevant) or depth + 1
        if a != b:
            moves.append(Move(q.query, b, a))
    up = sorted((m for m in moves if m.gain > 0), key=lambda m: (-m.gain, m.query))[:n]
    down = sorted((m for m in moves if m.gain < 0), key=lambda m: (m.gain, m.query))[:n]
    return up, down
