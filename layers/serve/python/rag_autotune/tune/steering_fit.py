"""Vote steering in a tune run (smoke step): its radius and coefficients fitted on the train split, checked on
held-out, shipped in the candidate's memory snapshot (so they are tied to the encoder that made the vectors).

- Fit: the train queries in two folds (memory_eval.fold_of), each steered by the other fold's votes only, so a
  question is never steered by its own votes: what is measured is help from related questions. Each query's
  `POOL` nearest chunks are re-scored with steering.py's formula in numpy (the engine scores alike: the
  VectorIndex contract checks it), over the grid gate.STEER_RADII × STEER_B × STEER_C.
- Check: the held-out queries, steered by every train vote, through the engine itself in the candidate's
  retrieval mode, against the same queries unsteered (gate.steering_verdict).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ..chunking import embed_hash
from ..domain import Hit, RetrievalMode
from ..memory import MemoryParams, MemoryVote, VoteMemory, build_memory
from ..ports import Encoder, VectorIndex, Vectors
from ..steering import Steer, SteerParams, steered_scores
from .gate import METRIC, STEER_B, STEER_C, STEER_RADII, SteerPoint, choose_steering, steering_verdict
from .metrics import Judged, evaluate

POOL = 100  # chunks per query re-scored by the fit; the held-out check searches the whole version
RANK_DEPTH = 40


@dataclass(frozen=True)
class Pool:
    """One query's nearest chunks: its vector, the hits (best first) and the chunks' unit vectors."""

    vector: Vectors
    hits: list[Hit]
    matrix: Vectors
    sims: Vectors  # cosine of each hit to the query


def pools(
    encoder: Encoder, index: VectorIndex, version: str, queries: Sequence[str], depth: int = POOL
) -> dict[str, Pool]:
    unique = list(dict.fromkeys(queries))
    if not unique:
        return {}
    vectors = encoder.encode(unique)
    found = {q: index.search(version, v, depth) for q, v in zip(unique, vectors, strict=True)}
    hashes = {embed_hash(h.chunk) for hits in found.values() for h in hits}
    stored = index.vectors(version, hashes)
    out: dict[str, Pool] = {}
    for q, v in zip(unique, vectors, strict=True):
        hits = [h for h in found[q] if embed_hash(h.chunk) in stored]
        raw = np.array([stored[embed_hash(h.chunk)] for h in hits], dtype=np.float32).reshape(len(hits), v.shape[0])
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        rows = (raw / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        unit = (np.asarray(v, dtype=np.float32) / (float(np.linalg.norm(v)) or 1.0)).astype(np.float32)
        out[q] = Pool(unit, hits, rows, rows @ unit)
    return out


def _docs(hits: Sequence[Hit], order: Sequence[int]) -> list[str]:
    seen: dict[str, None] = {}
    for i in order:
        seen.setdefault(hits[i].chunk.doc_id, None)
    return list(seen)


def pool_ranking(pool: Pool, steer: Steer | None) -> list[str]:
    """Doc ids best first: the pool as searched, or re-scored by the formula."""
    if steer is None or not pool.hits:
        return _docs(pool.hits, range(len(pool.hits)))
    scores = steered_scores(pool.sims, pool.matrix @ steer.positive, pool.matrix @ steer.negative, steer)
    return _docs(pool.hits, np.argsort(-scores, kind="stable").tolist())


def doc_vectors(index: VectorIndex, version: str, votes: Sequence[MemoryVote]) -> dict[str, Vectors]:
    """doc_id → the vector of the chunk its latest vote was on, as the version holds it."""
    latest = {v.doc_id: v.chunk_id for v in sorted(votes, key=lambda v: v.created_at) if v.chunk_id}
    stored = index.chunk_vectors(version, set(latest.values()))
    return {d: stored[c] for d, c in latest.items() if c in stored}


def _memory(
    version: str,
    dim: int,
    votes: Sequence[MemoryVote],
    query_vectors: Mapping[str, Vectors],
    params: MemoryParams,
    docs: Mapping[str, Vectors],
    now: float,
) -> VoteMemory:
    mem = build_memory(version, votes, query_vectors, dim, params, now)
    mem.doc_vectors.update({d: v for d, v in docs.items() if d in mem.doc_chunks})
    return mem


def evaluate_steering(
    train_votes: Sequence[MemoryVote],
    folds: Sequence[Sequence[MemoryVote]],
    fold_of: Callable[[str], int],
    sets: Mapping[str, Sequence[Judged]],
    *,
    encoder: Encoder,
    query_vectors: Mapping[str, Vectors],
    index: VectorIndex,
    version: str,
    mode: RetrievalMode,
    params: MemoryParams,
    docs: Mapping[str, Vectors],
    now: float,
) -> tuple[dict[str, Any], SteerParams]:
    """The report's "steering" section and the params to ship. docs: the voted documents' vectors."""
    repeated, heldout = list(sets.get("repeated", [])), list(sets.get("heldout", []))
    if not train_votes or not repeated:
        return {**asdict(SteerParams()), "reasons": ["no train votes to fit steering on: shipped off"]}, SteerParams()
    dim = encoder.dim
    by_fold = [_memory(encoder.version, dim, folds[1 - f], query_vectors, params, docs, now) for f in (0, 1)]
    pooled = pools(encoder, index, version, [q.query for q in repeated])

    def unseen(p: SteerParams | None) -> float:
        def rank(query: str) -> list[str]:
            pool = pooled[query]
            steer = by_fold[fold_of(query)].steer(pool.vector, now, p) if p is not None else None
            return pool_ranking(pool, steer)

        return float(evaluate(rank, repeated)[METRIC])

    unseen_without = unseen(None)
    grid = [
        SteerPoint(r, b, c, unseen(SteerParams(r, 1.0, b, c, enabled=True)))
        for r in STEER_RADII
        for b in STEER_B
        for c in STEER_C
    ]
    chosen = choose_steering(grid, unseen_without)
    section: dict[str, Any] = {"unseen_without": unseen_without, "grid": [g.__dict__ for g in grid]}
    if chosen is None:
        reasons = [f"no grid point raises train {METRIC} above {unseen_without:.4f} unsteered: shipped off"]
        return {**section, **asdict(SteerParams()), "reasons": reasons}, SteerParams()
    fitted = SteerParams(chosen.radius, 1.0, chosen.b, chosen.c, enabled=True)
    mem = _memory(encoder.version, dim, train_votes, query_vectors, params, docs, now)
    vector_of = functools.lru_cache(maxsize=None)(lambda query: encoder.encode([query])[0])
    rows = {
        name: {
            "without": evaluate(engine_ranker(vector_of, index, version, mode, None, now), judged),
            "with": evaluate(engine_ranker(vector_of, index, version, mode, (mem, fitted), now), judged),
        }
        for name, judged in (("repeated", repeated), ("heldout", heldout))
    }
    verdict = steering_verdict(rows["heldout"]["without"], rows["heldout"]["with"])
    shipped = replace(fitted, enabled=verdict.passed)
    return {**section, **asdict(shipped), "reasons": verdict.reasons, "rows": rows}, shipped


def engine_ranker(
    vector_of: Callable[[str], Vectors],
    index: VectorIndex,
    version: str,
    mode: RetrievalMode,
    steering: tuple[VoteMemory, SteerParams] | None,
    now: float,
    depth: int = RANK_DEPTH,
) -> Callable[[str], list[str]]:
    """Doc ids best first as serving answers: one engine query in `mode`, steered by the memory's votes."""

    def rank(query: str) -> list[str]:
        vector = vector_of(query)
        steer = steering[0].steer(vector, now, steering[1]) if steering is not None else None
        hits = index.query(version, vector, query, depth, mode, steer).hits
        return _docs(hits, range(len(hits)))

    return rank
