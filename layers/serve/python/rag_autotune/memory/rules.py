"""The vote rules and the boosts they give: one encoder version's voted queries as a matrix.

The memory holds one row per distinct query text (normalised) and, per row, a net weight per document. At ask
time remembered queries with cosine ≥ threshold (found by `simhash.near_rows`) give `weight × sim × net` to the
documents their voters judged (👍 +, 👎 −), and the candidates are re-ranked on score + boost × the spread of the
candidates' scores (`rerank`): a boost is a share of the list it moves documents in, so it means the same
whichever mode scored the list (cosine, or BM25 fused by DBSF or RRF, whose scores span very different ranges).

Rules (all in `VoteMemory.add` and `VoteMemory.replay`, one code path, so a snapshot replayed and a live refresh
agree):
- one voter, one query, one document: the latest vote counts, once (👍 then 👎 is one 👎);
- a voter counts on at most `client_daily_cap` distinct queries per document per UTC day;
- votes of different voters add up, so opposite votes cancel by weight;
- a vote's weight halves every `half_life_days` (kept exact without rewriting: weights are stored relative to
  a fixed epoch and scaled by 2^-(now-epoch)/half_life at ask time);
- a document's boost is never below -max_penalty: demoted, not hidden, for a query it clearly answers.

numpy only, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ..domain import Hit, Vote, normalise
from ..ports import Vectors
from ..steering import Steer, SteerParams, steer_from
from .simhash import WORDS, Hashes, Rows, near_rows, simhash

if TYPE_CHECKING:
    from ..settings import Settings

DAY_S = 86400.0
_TINY = 1e-9


@dataclass(frozen=True)
class MemoryParams:
    threshold: float = 0.95  # cosine to a remembered query for its votes to apply
    weight: float = 1.0  # spreads of the candidates' scores added per unit of net vote × similarity
    half_life_days: float = 7.0
    client_daily_cap: int = 3  # distinct queries per voter per document per day that count
    max_penalty: float = 0.9  # a document's boost never goes below -max_penalty (in spreads, as the weight)
    enabled: bool = True  # False: the gate found the memory lowered held-out quality for this model

    @classmethod
    def from_settings(cls, s: Settings) -> MemoryParams:
        return cls(
            threshold=s.memory_threshold,
            weight=s.memory_weight,
            half_life_days=s.memory_half_life_days,
            client_daily_cap=s.memory_client_daily_cap,
            max_penalty=s.memory_max_penalty,
        )


@dataclass(frozen=True)
class MemoryVote:
    """A vote as the memory sees it."""

    query: str
    doc_id: str
    voter: str
    up: bool
    created_at: float
    chunk_id: str = ""  # the chunk shown: its vector stands for the document when votes steer the search

    @classmethod
    def of(cls, v: Vote) -> MemoryVote:
        return cls(v.query, v.doc_id, v.voter, v.vote == "up", v.created_at, v.chunk_id)


class CountedVote(NamedTuple):
    """A vote that counts, on a row of the memory: what a snapshot stores and replays."""

    voter: str
    row: int
    doc: str
    up: bool
    at: float


# A vote this many half-lives after the epoch moves the epoch (VoteMemory._rebase): far from overflow, and
# rare enough to cost nothing.
_REBASE_HALF_LIVES = 256.0


class _Entry(NamedTuple):
    at: float
    contribution: float  # ±2^((at - epoch) / half_life)
    up: bool


def _grown(a: npt.NDArray[Any], rows: int) -> npt.NDArray[Any]:
    out = np.zeros((rows, *a.shape[1:]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


class VoteMemory:
    """The in-memory matrix of voted queries for one encoder version, and the boosts it gives."""

    def __init__(
        self,
        model_version: str,
        dim: int,
        params: MemoryParams,
        epoch: float | None = None,
        steering: SteerParams | None = None,
    ) -> None:
        self.model_version = model_version
        self.dim = dim
        self.params = params
        self.steering = steering or SteerParams()  # fitted with this encoder (steering.py); off when not fitted
        self.doc_chunks: dict[str, str] = {}  # doc_id → the chunk its latest vote was on
        self.doc_vectors: dict[str, Vectors] = {}  # doc_id → that chunk's vector in this encoder's index
        self.epoch = time.time() if epoch is None else epoch
        self._half_life_s = max(params.half_life_days, 1e-6) * DAY_S
        self._rows: dict[str, int] = {}  # normalised query → row
        self._texts: list[str] = []
        self._matrix = np.zeros((16, dim), dtype=np.float32)
        # (words, rows): the distance sums 4 contiguous rows; summing along a 4-wide axis is far slower
        self._hashes: Hashes = np.zeros((WORDS, 16), dtype=np.uint64)
        self._docs: list[dict[str, float]] = []  # per row: doc_id → Σ contributions
        self._entries: dict[tuple[str, str, str], _Entry] = {}  # (voter, query, doc) → the vote that counts
        self._counted: dict[tuple[str, str, int], set[str]] = {}  # (voter, doc, day) → queries counted

    # ---- reading ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Votes that count."""
        return len(self._entries)

    @property
    def queries(self) -> int:
        return len(self._texts)

    @property
    def texts(self) -> list[str]:
        """The remembered query texts, by row."""
        return list(self._texts)

    @property
    def vectors(self) -> Vectors:
        """The remembered queries' unit vectors, by row (a view: do not write to it)."""
        return self._matrix[: len(self._texts)]

    def counted(self) -> list[CountedVote]:
        """The votes that count, each on its row."""
        return [CountedVote(k[0], self._rows[k[1]], k[2], e.up, e.at) for k, e in self._entries.items()]

    def knows(self, query: str) -> bool:
        return normalise(query) in self._rows

    # ---- building ---------------------------------------------------------------------------------------

    def add(self, vote: MemoryVote, vector: Vectors | None = None) -> bool:
        """Apply one vote; True when it changed the memory. `vector` (this memory's encoder) is needed only for
        a query text the memory does not know yet. Idempotent: a vote no newer than the one counted for the same
        (voter, query, document) changes nothing, so overlapping refreshes are safe."""
        qkey = normalise(vote.query)
        row = self._rows.get(qkey)
        if row is None and self._counts(vote.voter, qkey, vote.doc_id, vote.created_at):
            if vector is None:
                raise ValueError(f"a vector is needed for a query the memory does not know: {vote.query[:60]!r}")
            row = self.add_queries([vote.query], np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
        if row is None:
            return False  # the row is made only for a vote that counts
        if vote.chunk_id and self.doc_chunks.get(vote.doc_id) != vote.chunk_id:
            self.doc_chunks[vote.doc_id] = vote.chunk_id
            self.doc_vectors.pop(vote.doc_id, None)  # another chunk now stands for it: looked up again
        return self._apply(vote.voter, qkey, row, vote.doc_id, vote.up, vote.created_at)

    def replay(self, vote: CountedVote) -> bool:
        """Apply a vote on a row the memory already has, through the same rules as `add`."""
        return self._apply(vote.voter, normalise(self._texts[vote.row]), vote.row, vote.doc, vote.up, vote.at)

    def add_queries(self, texts: Sequence[str], vectors: Vectors) -> list[int]:
        """New rows for query texts the memory does not know yet (one projection for all of them)."""
        qkeys = [normalise(t) for t in texts]
        if len(set(qkeys)) != len(qkeys) or any(k in self._rows for k in qkeys):
            raise ValueError("a query the memory already has, or the same query twice")
        if vectors.shape != (len(texts), self.dim):
            raise ValueError(
                f"vectors {vectors.shape} for {len(texts)} queries of dim {self.dim} ({self.model_version})"
            )
        start, n = len(self._texts), len(qkeys)
        if start + n > self._matrix.shape[0]:
            capacity = max(start + n, self._matrix.shape[0] * 2)
            self._matrix, self._hashes = _grown(self._matrix, capacity), _grown(self._hashes.T, capacity).T.copy()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit = (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        self._matrix[start : start + n] = unit
        self._hashes[:, start : start + n] = simhash(unit).T
        for i, (qkey, text) in enumerate(zip(qkeys, texts, strict=True)):
            self._rows[qkey] = start + i
            self._texts.append(text)
            self._docs.append({})
        return list(range(start, start + n))

    def _counts(self, voter: str, qkey: str, doc: str, at: float) -> bool:
        """Whether a vote would count: newer than the one counted for (voter, query, doc), or the first one
        within the voter's daily cap for the document."""
        old = self._entries.get((voter, qkey, doc))
        if old is not None:
            return old.at < at
        bucket = self._counted.get((voter, doc, int(at // DAY_S)), set())
        return qkey in bucket or len(bucket) < self.params.client_daily_cap

    def _apply(self, voter: str, qkey: str, row: int, doc: str, up: bool, at: float) -> bool:
        if not self._counts(voter, qkey, doc, at):
            return False
        key = (voter, qkey, doc)
        old = self._entries.get(key)
        if old is None:
            self._counted.setdefault((voter, doc, int(at // DAY_S)), set()).add(qkey)
        if (at - self.epoch) / self._half_life_s > _REBASE_HALF_LIVES:
            self._rebase(at)
        docs = self._docs[row]
        contribution = (1.0 if up else -1.0) * 2.0 ** ((at - self.epoch) / self._half_life_s)
        net = docs.get(doc, 0.0) - (old.contribution if old else 0.0) + contribution
        if abs(net) <= _TINY * abs(contribution):  # opposite votes of equal weight cancel exactly
            docs.pop(doc, None)
        else:
            docs[doc] = net
        self._entries[key] = _Entry(at, contribution, up)
        return True

    def _rebase(self, epoch: float) -> None:
        """Moves the epoch to `epoch`, scaling every stored weight to match: the same boosts, and weights that
        stay finite however long the memory lives (2^x overflows a float past x = 1024 half-lives)."""
        scale = 2.0 ** (-(epoch - self.epoch) / self._half_life_s)
        for docs in self._docs:
            for doc in docs:
                docs[doc] *= scale
        self._entries = {k: e._replace(contribution=e.contribution * scale) for k, e in self._entries.items()}
        self.epoch = epoch

    # ---- asking -----------------------------------------------------------------------------------------

    def boosts(self, vector: Vectors, now: float) -> dict[str, float]:
        """doc_id → score to add, for a query vector of this memory's encoder. Empty when nothing is near."""
        return self.lookup(vector, now, steer=False)[0]

    def lookup(
        self, vector: Vectors, now: float, *, boost: bool = True, steer: bool = True
    ) -> tuple[dict[str, float], Steer | None]:
        """The boosts and the steering of one question, from one search of the remembered queries (at the wider
        of the memory's threshold and the steering radius): /ask needs both, and the SimHash once."""
        p = self.steering
        boost = boost and self.params.enabled
        steer = steer and p.enabled
        if not self._texts or not (boost or steer):
            return {}, None
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        limits = ([self.params.threshold] if boost else []) + ([p.radius] if steer else [])
        near, sims = self.near(q, min(limits))
        if near.size == 0:
            return {}, None
        decay = 2.0 ** (-(now - self.epoch) / self._half_life_s)
        boosts = self._boosts(near, sims, decay) if boost else {}
        return boosts, self._steer(q, near, sims, decay, p) if steer else None

    def _boosts(self, near: Rows, sims: Vectors, decay: float) -> dict[str, float]:
        scale = self.params.weight * decay
        out: dict[str, float] = {}
        for i, sim in zip(near.tolist(), sims.tolist(), strict=True):
            if sim < self.params.threshold:
                continue
            s = sim * scale
            for doc, net in self._docs[i].items():
                out[doc] = out.get(doc, 0.0) + s * net
        floor = -self.params.max_penalty
        return {d: max(b, floor) for d, b in out.items() if abs(b) > 1e-6}

    def near(self, v: Vectors, threshold: float | None = None) -> tuple[Rows, Vectors]:
        """Rows with cosine ≥ threshold (the memory's by default) to v, and their cosines (exact)."""
        limit = self.params.threshold if threshold is None else threshold
        return near_rows(self._matrix, self._hashes, len(self._texts), v, limit)

    def steer(self, vector: Vectors, now: float, params: SteerParams | None = None) -> Steer | None:
        """The relevance feedback for a question from the voted questions within the steering radius: each of
        their documents scored Σ cosine × net votes (decayed as the boosts are). None when none is near, or
        steering is off for this memory (`params` overrides its fitted ones: the tune's grid)."""
        p = params or self.steering
        if not p.enabled or not self._texts:
            return None
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        near, sims = self.near(q, p.radius)
        if near.size == 0:
            return None
        return self._steer(q, near, sims, 2.0 ** (-(now - self.epoch) / self._half_life_s), p)

    def _steer(self, q: Vectors, near: Rows, sims: Vectors, decay: float, p: SteerParams) -> Steer | None:
        scores: dict[str, float] = {}
        questions = 0
        for i, sim in zip(near.tolist(), sims.tolist(), strict=True):
            if sim < p.radius:
                continue
            questions += 1
            for doc, net in self._docs[i].items():
                scores[doc] = scores.get(doc, 0.0) + sim * net * decay
        return steer_from(q, scores, self.doc_vectors, p, questions) if questions else None

    def missing_doc_vectors(self) -> dict[str, str]:
        """chunk_id → doc_id of the voted documents whose vector is not known yet."""
        return {c: d for d, c in self.doc_chunks.items() if d not in self.doc_vectors}


def build_memory(
    model_version: str,
    votes: Sequence[MemoryVote],
    vectors: Mapping[str, Vectors],
    dim: int,
    params: MemoryParams,
    epoch: float | None = None,
    steering: SteerParams | None = None,
) -> VoteMemory:
    """A memory from votes, oldest first; `vectors` maps each vote's query text to its vector."""
    mem = VoteMemory(model_version, dim, params, epoch, steering)
    for v in sorted(votes, key=lambda v: v.created_at):
        mem.add(v, None if mem.knows(v.query) else vectors[v.query])
    return mem


def rerank(hits: Sequence[Hit], boosts: Mapping[str, float]) -> list[tuple[Hit, float]]:
    """Best chunk per document (in hit order), each with its boosted score, best first. A boost counts in
    spreads of these documents' scores (best − worst): the same vote moves a document as far through a list of
    cosines as through one of fused ranks. Stable: documents the memory does not touch keep their order among
    themselves."""
    best: dict[str, Hit] = {}
    for h in hits:
        best.setdefault(h.chunk.doc_id, h)
    if not boosts or not best:
        return [(h, h.score) for h in best.values()]
    scores = [h.score for h in best.values()]
    spread = (max(scores) - min(scores)) or 1.0  # one document, or all tied: nothing to scale by
    scored = [(h, h.score + spread * boosts.get(d, 0.0)) for d, h in best.items()]
    scored.sort(key=lambda x: -x[1])
    return scored
