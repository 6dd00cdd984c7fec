"""The feedback memory in a tune run (smoke step): live and candidate, each with and without the memory.

- Vote split: the same hash as Prepare (dataset.is_heldout), so held-out queries' votes are never remembered
  while they are judged.
- Grid: threshold × weight on the train split (gate.choose_memory), scored on the repeated queries (their
  own votes remembered) and on "unseen" ones (two folds of the train queries, each judged with only the
  other fold's votes), then checked on held-out (gate.memory_verdict).
- The candidate's memory is rebuilt from every vote with the candidate encoder (the voted query texts
  re-encoded) and shipped as models/<candidate>/memory.npz, with the chosen values: after a swap the new
  encoder never meets vectors of the old one.
- Vote steering (steering_fit.py) is fitted on the same folds and ships in the same snapshot, with the voted
  documents' vectors from the candidate's index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..domain import Hit, RetrievalMode, Vote, normalise
from ..memory import MemoryParams, MemoryVote, VoteMemory, build_memory, dump_snapshot, rerank
from ..ports import Encoder, VectorIndex, Vectors
from .dataset import is_heldout
from .gate import MEMORY_THRESHOLDS, MEMORY_WEIGHTS, METRIC, MemoryPoint, choose_memory, memory_verdict
from .metrics import Judged, evaluate
from .steering_fit import doc_vectors, evaluate_steering


@dataclass(frozen=True)
class Retrieved:
    vector: Vectors
    hits: list[Hit]


def retrieve_all(
    encoder: Encoder, index: VectorIndex, version: str, queries: Sequence[str], depth: int, mode: RetrievalMode
) -> dict[str, Retrieved]:
    """Each query encoded (in one batch) and searched once in `mode`, as /ask would; re-ranking with any memory
    is then pure numpy."""
    unique = list(dict.fromkeys(queries))
    if not unique:
        return {}
    vectors = encoder.encode(unique)
    return {q: Retrieved(v, index.query(version, v, q, depth, mode).hits) for q, v in zip(unique, vectors, strict=True)}


def ranking(pool: Mapping[str, Retrieved], memory: VoteMemory | None, now: float) -> Callable[[str], list[str]]:
    def rank(query: str) -> list[str]:
        r = pool[query]
        boosts = memory.boosts(r.vector, now) if memory is not None else {}
        return [h.chunk.doc_id for h, _ in rerank(r.hits, boosts)]

    return rank


def fold_of(query: str) -> int:
    return hashlib.sha256(b"fold|" + normalise(query).encode()).digest()[0] & 1


@dataclass
class Model:
    """One side (live or candidate): its encoder's vectors of the voted queries and its retrieval pool."""

    version: str
    dim: int
    vectors: dict[str, Vectors]
    pool: dict[str, Retrieved]

    def memory(self, votes: Sequence[MemoryVote], params: MemoryParams, epoch: float) -> VoteMemory:
        return build_memory(self.version, votes, self.vectors, self.dim, params, epoch)


def _model(
    encoder: Encoder,
    index: VectorIndex,
    index_version: str,
    votes: Sequence[MemoryVote],
    queries: Sequence[str],
    depth: int,
    mode: RetrievalMode,
) -> Model:
    texts = list(dict.fromkeys(v.query for v in votes))
    vectors = dict(zip(texts, encoder.encode(texts), strict=True)) if texts else {}
    pool = retrieve_all(encoder, index, index_version, queries, depth, mode)
    return Model(encoder.version, encoder.dim, vectors, pool)


def evaluate_memory(
    votes: Sequence[Vote],
    sets: Mapping[str, Sequence[Judged]],
    *,
    live: tuple[Encoder, str],
    candidate: tuple[Encoder, str],
    index: VectorIndex,
    params: MemoryParams,
    heldout_fraction: float,
    depth: int,
    mode: RetrievalMode = "dense",
) -> tuple[dict[str, Any], bytes | None]:
    """The report's "memory" section, and the candidate's memory snapshot (None without votes)."""
    mvotes = [MemoryVote.of(v) for v in sorted(votes, key=lambda v: v.created_at)]
    if not mvotes:
        return {"votes": 0, "enabled": params.enabled, "reasons": ["no votes to remember"]}, None
    now = mvotes[-1].created_at  # judged as of the last vote: the memory serves minutes after the votes
    train_votes = [v for v in mvotes if not is_heldout(v.query, heldout_fraction)]
    folds = [[v for v in train_votes if fold_of(v.query) == f] for f in (0, 1)]
    repeated, heldout = list(sets.get("repeated", [])), list(sets.get("heldout", []))
    queries = [q.query for q in (*repeated, *heldout)]
    # Both sides in the candidate's mode (a version without BM25 vectors answers dense): the memory is fitted on
    # the lists it will re-rank, and its weights count in spreads of their scores (memory.rerank).
    sides = {
        "live": _model(live[0], index, live[1], mvotes, queries, depth, mode),
        "candidate": _model(candidate[0], index, candidate[1], mvotes, queries, depth, mode),
    }
    cand = sides["candidate"]

    def score(side: Model, mem: VoteMemory | None, judged: Sequence[Judged]) -> dict[str, float]:
        return evaluate(ranking(side.pool, mem, now), judged)

    def unseen(side: Model, p: MemoryParams) -> dict[str, float]:
        by_fold = [side.memory(folds[1 - f], p, now) for f in (0, 1)]  # judged with the other fold's votes
        rankers = [ranking(side.pool, m, now) for m in by_fold]
        return evaluate(lambda q: rankers[fold_of(q)](q), repeated)

    grid: list[MemoryPoint] = []
    for threshold in MEMORY_THRESHOLDS:
        for weight in MEMORY_WEIGHTS:
            p = replace(params, threshold=threshold, weight=weight, enabled=True)
            rep = score(cand, cand.memory(train_votes, p, now), repeated)
            grid.append(MemoryPoint(threshold, weight, rep[METRIC], unseen(cand, p)[METRIC]))
    unseen_without = score(cand, None, repeated)[METRIC]
    chosen = choose_memory(grid, unseen_without)
    best = replace(params, threshold=chosen.threshold, weight=chosen.weight, enabled=True)

    rows: dict[str, dict[str, dict[str, float]]] = {}
    for name, side in sides.items():
        mem = side.memory(train_votes, best, now)
        rows[name] = {"repeated": score(side, None, repeated), "heldout": score(side, None, heldout)}
        rows[f"{name}+memory"] = {"repeated": score(side, mem, repeated), "heldout": score(side, mem, heldout)}
    verdict = memory_verdict(rows["candidate"]["heldout"], rows["candidate+memory"]["heldout"])
    shipped = replace(best, enabled=verdict.passed and params.enabled)
    snapshot = cand.memory(mvotes, shipped, now)
    docs = doc_vectors(index, candidate[1], mvotes)
    steering, snapshot.steering = evaluate_steering(
        train_votes,
        folds,
        fold_of,
        sets,
        encoder=candidate[0],
        query_vectors=cand.vectors,
        index=index,
        version=candidate[1],
        mode=mode,
        params=params,
        docs=docs,
        now=now,
    )
    snapshot.doc_vectors.update({d: v for d, v in docs.items() if d in snapshot.doc_chunks})
    section = {
        "votes": len(mvotes),
        "counted": len(snapshot),
        "queries": snapshot.queries,
        "train_votes": len(train_votes),
        "threshold": shipped.threshold,
        "weight": shipped.weight,
        "half_life_days": shipped.half_life_days,
        "client_daily_cap": shipped.client_daily_cap,
        "max_penalty": shipped.max_penalty,
        "enabled": shipped.enabled,
        "reasons": verdict.reasons,
        "unseen_without": unseen_without,
        "grid": [g.__dict__ for g in grid],
        "rows": rows,
        "steering": steering,
    }
    return section, dump_snapshot(snapshot, as_of=now, extra={"chosen_on": "train split", "reasons": verdict.reasons})
