"""Serve-time feedback memory: votes count at once, before any tuning.

The memory holds the voted queries of one encoder version as a matrix (one row per distinct query text) and,
per row, a net weight per document. At ask time a query's similarity to every remembered query is one
matrix-vector product; remembered queries with cosine ≥ threshold add `weight × sim × net` to the documents
their voters judged (👍 +, 👎 −), and the candidates are re-ranked on the boosted score.

Finding the near rows: a full scan of 10k × 384 float32 (15 MB) is bound by memory bandwidth once the
encoder and the index have evicted it from cache (about 1.3 ms per query here). Each row also keeps a 256-bit
SimHash (signs of 256 fixed random Gaussian projections, 32 bytes a row), and only rows whose Hamming distance
to the query's could belong to a cosine ≥ threshold are scored exactly. For random hyperplanes each bit
differs with probability angle/π independently, so the cut-off (expected count + 6σ at the threshold angle)
misses a row that is truly near with probability below 1e-9; thresholds too low to prune scan everything.

Rules (all in `VoteMemory.add`, so a snapshot replayed and a live refresh agree):
- one voter, one query, one document: the latest vote counts, once (👍 then 👎 is one 👎);
- a voter counts on at most `client_daily_cap` distinct queries per document per UTC day;
- votes of different voters add up, so opposite votes cancel by weight;
- a vote's weight halves every `half_life_days` (kept exact without rewriting: weights are stored relative to
  a fixed epoch and scaled by 2^-(now-epoch)/half_life at ask time);
- a document's boost is never below -max_penalty: demoted, not hidden, for a query it clearly answers.

Version tie: a `VoteMemory` names the encoder version whose vectors it holds. `LiveMemory` refuses any other
encoder, and adds a vote's logged embedding only when the vote's model_version is its own; otherwise it
re-encodes that query text once with its encoder. A tune run ships a rebuilt memory with each new model
(models/<version>/memory.npz), so after a swap no query meets vectors of another encoder.

numpy only: no I/O here beyond the ports LiveMemory is given.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .domain import Hit, Vote, normalise
from .errors import ArtifactNotFound, CorruptArtifact, RagError
from .observability import logger
from .ports import ArtifactStore, Encoder, FeedbackStore, Vectors
from .versions import model_prefix

if TYPE_CHECKING:
    from .settings import Settings

DAY_S = 86400.0
_TINY = 1e-9


def memory_key(model_version: str) -> str:
    """The memory snapshot shipped with a model (written by the tune's smoke step)."""
    return model_prefix(model_version) + "memory.npz"


def pack_vector(vector: Vectors) -> bytes:
    """A query vector as logged with the query (float16: 768 bytes for 384 dims; cosine error < 1e-3)."""
    return np.asarray(vector, dtype=np.float32).reshape(-1).astype(np.float16).tobytes()


def unpack_vector(data: bytes) -> Vectors:
    return np.frombuffer(data, dtype=np.float16).astype(np.float32)


@dataclass(frozen=True)
class MemoryParams:
    threshold: float = 0.95  # cosine to a remembered query for its votes to apply
    weight: float = 0.3  # score added per unit of net vote × similarity
    half_life_days: float = 7.0
    client_daily_cap: int = 3  # distinct queries per voter per document per day that count
    max_penalty: float = 0.25  # a document's boost never goes below -max_penalty
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

    @classmethod
    def of(cls, v: Vote) -> MemoryVote:
        return cls(v.query, v.doc_id, v.voter, v.vote == "up", v.created_at)


class _Entry(NamedTuple):
    at: float
    contribution: float  # ±2^((at - epoch) / half_life)
    up: bool


_SIMHASH_BITS = 256
_SIMHASH_SIGMAS = 6.0
_PLANES: dict[int, Vectors] = {}  # dim → projections, fixed (seeded): every process hashes alike


def _planes(dim: int) -> Vectors:
    """(dim, BITS) standard normal projections from a fixed seed. Box-Muller over SHAKE-256 output rather than
    numpy.random, which the serve layer does not carry (scripts/build_layer.py prunes it)."""
    if dim not in _PLANES:
        n = dim * _SIMHASH_BITS  # even: normals come in pairs
        raw = np.frombuffer(hashlib.shake_256(b"rag-autotune simhash planes").digest(8 * n), dtype="<u8")
        u = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53  # uniform in (0, 1)
        r, theta = np.sqrt(-2.0 * np.log(u[: n // 2])), 2.0 * np.pi * u[n // 2 :]
        _PLANES[dim] = (
            np.concatenate([r * np.cos(theta), r * np.sin(theta)]).reshape(dim, _SIMHASH_BITS).astype(np.float32)
        )
    return _PLANES[dim]


Hashes = npt.NDArray[np.uint64]
Rows = npt.NDArray[np.intp]


def _simhash(unit_rows: Vectors) -> Hashes:
    """(n, dim) → (n, BITS/64) uint64 sign bits of the fixed projections."""
    return np.packbits(unit_rows @ _planes(unit_rows.shape[1]) > 0, axis=1).view(np.uint64)


def _grown(a: npt.NDArray[Any], rows: int) -> npt.NDArray[Any]:
    out = np.zeros((rows, *a.shape[1:]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def hamming_cutoff(threshold: float, bits: int = _SIMHASH_BITS, sigmas: float = _SIMHASH_SIGMAS) -> float:
    """Largest Hamming distance a row with cosine ≥ threshold plausibly has; ≥ bits/2 means no pruning."""
    p = float(np.arccos(np.clip(threshold, -1.0, 1.0))) / np.pi
    return bits * p + sigmas * float(np.sqrt(bits * p * (1.0 - p)))


class VoteMemory:
    """The in-memory matrix of voted queries for one encoder version, and the boosts it gives."""

    def __init__(self, model_version: str, dim: int, params: MemoryParams, epoch: float | None = None) -> None:
        self.model_version = model_version
        self.dim = dim
        self.params = params
        self.epoch = time.time() if epoch is None else epoch
        self._half_life_s = max(params.half_life_days, 1e-6) * DAY_S
        self._rows: dict[str, int] = {}  # normalised query → row
        self._texts: list[str] = []
        self._matrix = np.zeros((16, dim), dtype=np.float32)
        # (words, rows): the distance sums 4 contiguous rows; summing along a 4-wide axis costs 8x more
        self._hashes: Hashes = np.zeros((_SIMHASH_BITS // 64, 16), dtype=np.uint64)
        self._docs: list[dict[str, float]] = []  # per row: doc_id → Σ contributions
        self._entries: dict[tuple[str, str, str], _Entry] = {}  # (voter, query, doc) → the vote that counts
        self._counted: dict[tuple[str, str, int], set[str]] = {}  # (voter, doc, day) → queries counted

    # ---- building -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Votes that count."""
        return len(self._entries)

    @property
    def queries(self) -> int:
        return len(self._texts)

    def knows(self, query: str) -> bool:
        return normalise(query) in self._rows

    def add(self, vote: MemoryVote, vector: Vectors | None = None) -> bool:
        """Apply one vote; True when it changed the memory. `vector` (this memory's encoder) is needed only for
        a query text the memory does not know yet. Idempotent: a vote no newer than the one counted for the same
        (voter, query, document) changes nothing, so overlapping refreshes are safe."""
        qkey = normalise(vote.query)
        return self._apply(
            vote.voter, qkey, vote.doc_id, vote.up, vote.created_at, lambda: self._row(qkey, vote.query, vector)
        )

    def _apply(self, voter: str, qkey: str, doc: str, up: bool, at: float, row_of: Callable[[], int]) -> bool:
        key = (voter, qkey, doc)
        old = self._entries.get(key)
        if old is not None and old.at >= at:
            return False
        if old is None:
            bucket = self._counted.setdefault((voter, doc, int(at // DAY_S)), set())
            if qkey not in bucket and len(bucket) >= self.params.client_daily_cap:
                return False
            bucket.add(qkey)
        docs = self._docs[row_of()]  # the row is made only for a vote that counts
        contribution = (1.0 if up else -1.0) * 2.0 ** ((at - self.epoch) / self._half_life_s)
        net = docs.get(doc, 0.0) - (old.contribution if old else 0.0) + contribution
        if abs(net) <= _TINY * abs(contribution):  # opposite votes of equal weight cancel exactly
            docs.pop(doc, None)
        else:
            docs[doc] = net
        self._entries[key] = _Entry(at, contribution, up)
        return True

    def _row(self, qkey: str, text: str, vector: Vectors | None) -> int:
        row = self._rows.get(qkey)
        if row is not None:
            return row
        if vector is None:
            raise ValueError(f"a vector is needed for a query the memory does not know: {text[:60]!r}")
        return self._add_rows([qkey], [text], np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]

    def _add_rows(self, qkeys: Sequence[str], texts: Sequence[str], vectors: Vectors) -> list[int]:
        """New rows for query texts the memory does not know yet (one projection for all of them)."""
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vector of dim {vectors.shape[1]} for a memory of dim {self.dim} ({self.model_version})")
        start, n = len(self._texts), len(qkeys)
        if start + n > self._matrix.shape[0]:
            capacity = max(start + n, self._matrix.shape[0] * 2)
            self._matrix, self._hashes = _grown(self._matrix, capacity), _grown(self._hashes.T, capacity).T.copy()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit = (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        self._matrix[start : start + n] = unit
        self._hashes[:, start : start + n] = _simhash(unit).T
        for i, (qkey, text) in enumerate(zip(qkeys, texts, strict=True)):
            self._rows[qkey] = start + i
            self._texts.append(text)
            self._docs.append({})
        return list(range(start, start + n))

    # ---- asking ---------------------------------------------------------------------------------------

    def boosts(self, vector: Vectors, now: float) -> dict[str, float]:
        """doc_id → score to add, for a query vector of this memory's encoder. Empty when nothing is near."""
        n = len(self._texts)
        if n == 0 or not self.params.enabled:
            return {}
        near, sims = self._near(np.asarray(vector, dtype=np.float32).reshape(-1), n)
        if near.size == 0:
            return {}
        scale = self.params.weight * 2.0 ** (-(now - self.epoch) / self._half_life_s)
        out: dict[str, float] = {}
        for i, sim in zip(near.tolist(), sims.tolist(), strict=True):
            s = sim * scale
            for doc, net in self._docs[i].items():
                out[doc] = out.get(doc, 0.0) + s * net
        floor = -self.params.max_penalty
        return {d: max(b, floor) for d, b in out.items() if abs(b) > 1e-6}

    def _near(self, v: Vectors, n: int) -> tuple[Rows, Vectors]:
        """Rows with cosine ≥ threshold to v, and their cosines (exact)."""
        threshold = self.params.threshold
        cutoff = hamming_cutoff(threshold)
        if cutoff >= _SIMHASH_BITS / 2:  # too loose to prune: score every row
            sims = _similarities(self._matrix, n, v)
            near = np.flatnonzero(sims >= threshold)
            return near, sims[near]
        norm = float(np.linalg.norm(v)) or 1.0
        qhash = _simhash((v / np.float32(norm)).reshape(1, -1)).T  # (words, 1)
        distance = np.bitwise_count(self._hashes[:, :n] ^ qhash).sum(axis=0, dtype=np.uint16)
        candidates = np.flatnonzero(distance <= cutoff)
        sims = self._matrix[candidates] @ v
        keep = sims >= threshold
        return candidates[keep], sims[keep]

    # ---- snapshot -------------------------------------------------------------------------------------

    def to_bytes(self, as_of: float, extra: Mapping[str, Any] | None = None) -> bytes:
        """The votes that count and the query vectors (float16), as one .npz (no pickles)."""
        keys = list(self._entries)
        meta = {
            "model_version": self.model_version,
            "dim": self.dim,
            "epoch": self.epoch,
            "as_of": as_of,
            "params": asdict(self.params),
            "votes": len(keys),
            "queries": len(self._texts),
            **(extra or {}),
        }
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            meta=np.array(json.dumps(meta)),
            texts=np.array(self._texts, dtype=str),
            vectors=self._matrix[: len(self._texts)].astype(np.float16),
            voter=np.array([k[0] for k in keys], dtype=str),
            row=np.array([self._rows[k[1]] for k in keys], dtype=np.int32),
            doc=np.array([k[2] for k in keys], dtype=str),
            up=np.array([self._entries[k].up for k in keys], dtype=bool),
            at=np.array([self._entries[k].at for k in keys], dtype=np.float64),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, params: MemoryParams | None = None) -> tuple[VoteMemory, dict[str, Any]]:
        """A snapshot back, replayed through `add` (so the rules hold), and its meta. `params` replaces the
        snapshot's safety settings but keeps its tuned threshold, weight and enabled flag."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                texts = [str(t) for t in z["texts"]]
                vectors = z["vectors"].astype(np.float32)
                voters, rows, docs = z["voter"], z["row"], z["doc"]
                ups, ats = z["up"], z["at"]
        except (ValueError, KeyError, OSError) as exc:
            raise CorruptArtifact(f"feedback memory snapshot: {exc}") from exc
        stored = MemoryParams(**meta.get("params", {}))
        base = params or stored
        tuned = replace(base, threshold=stored.threshold, weight=stored.weight, enabled=stored.enabled)
        mem = cls(str(meta["model_version"]), int(meta["dim"]), tuned, meta.get("epoch"))
        if vectors.shape != (len(texts), mem.dim):
            raise CorruptArtifact(f"feedback memory snapshot: vectors {vectors.shape} for {len(texts)} queries")
        keys = [normalise(t) for t in texts]
        if len(set(keys)) != len(keys):
            raise CorruptArtifact("feedback memory snapshot: a query appears twice")
        mem._add_rows(keys, texts, vectors)  # all rows at once; the votes replay through `_apply` (the rules)
        row_of, voter_of, doc_of, up_of, at_of = (
            rows.tolist(),
            voters.tolist(),
            docs.tolist(),
            ups.tolist(),
            ats.tolist(),
        )
        if any(not 0 <= r < len(keys) for r in row_of):
            raise CorruptArtifact("feedback memory snapshot: a vote on a missing query")
        for i in np.argsort(ats, kind="stable").tolist():
            row = row_of[i]
            mem._apply(voter_of[i], keys[row], doc_of[i], up_of[i], at_of[i], partial(int, row))
        return mem, meta


# Rows per matrix-vector product. One product over 10k × 384 makes OpenBLAS wake its threads, which on a busy
# 2-core machine measured p50 8 ms / p99 12 ms; blocks of 1024 rows stay on one thread: p50 0.30 / p99 0.42 ms.
_BLOCK = 1024


def _similarities(matrix: Vectors, n: int, v: Vectors) -> Vectors:
    sims = np.empty(n, dtype=np.float32)
    for i in range(0, n, _BLOCK):
        j = min(i + _BLOCK, n)
        np.dot(matrix[i:j], v, out=sims[i:j])
    return sims


def build_memory(
    model_version: str,
    votes: Sequence[MemoryVote],
    vectors: Mapping[str, Vectors],
    dim: int,
    params: MemoryParams,
    epoch: float | None = None,
) -> VoteMemory:
    """A memory from votes, oldest first; `vectors` maps each vote's query text to its vector."""
    mem = VoteMemory(model_version, dim, params, epoch)
    for v in sorted(votes, key=lambda v: v.created_at):
        mem.add(v, None if mem.knows(v.query) else vectors[v.query])
    return mem


def rerank(hits: Sequence[Hit], boosts: Mapping[str, float]) -> list[tuple[Hit, float]]:
    """Best chunk per document (in hit order), each with its boosted score, best first. Stable: documents the
    memory does not touch keep their order among themselves."""
    best: dict[str, Hit] = {}
    for h in hits:
        best.setdefault(h.chunk.doc_id, h)
    scored = [(h, h.score + boosts.get(d, 0.0)) for d, h in best.items()]
    if boosts:
        scored.sort(key=lambda x: -x[1])
    return scored


# ---- the serving side: one memory per live encoder, kept current from the vote log -----------------------


class LiveMemory:
    """A VoteMemory for the live encoder, refreshed from FeedbackStore.votes(since=…) at most every refresh_s.

    Refresh reads only votes newer than the last one seen (minus an overlap for late-indexed votes, harmless
    because `add` is idempotent) through the time-ordered vote index, never a scan. A failed refresh is logged
    and retried later: the memory is an improvement, never a reason for /ask to fail.

    With `background` (the default), a request that finds the memory stale starts the refresh on a daemon thread
    and answers from the memory as it is (stale-while-revalidate): the DynamoDB round trip and the re-encoding
    of new query texts stay off the request path. On Lambda the thread is frozen with the sandbox between
    invocations and carries on in the next one. Without it, the refresh runs inline: read-your-votes at once,
    which tests and a refresh_s of 0 want."""

    OVERLAP_S = 5.0  # GSI propagation is typically sub-second; re-reading more is wasted work at high vote rates
    # After a burst of votes a refresh has thousands to read: it reads them in batches and applies each batch
    # in chunks, so that neither one response to parse nor one hold of the memory's lock (which /ask's boosts
    # wait for) grows with the burst.
    READ_BATCH = 500
    APPLY_CHUNK = 100
    _TIE_S = 1e-6  # the next batch starts this much before the last vote read: votes of the same instant are kept

    def __init__(
        self,
        memory: VoteMemory,
        feedback: FeedbackStore,
        encoder: Encoder,
        *,
        as_of: float,
        refresh_s: float = 10.0,
        depth: int = 40,
        max_votes: int = 20_000,
        background: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if encoder.version != memory.model_version:
            raise ValueError(f"memory of {memory.model_version} cannot serve encoder {encoder.version}")
        self.memory = memory
        self.depth = depth
        self._feedback = feedback
        self._encoder = encoder
        self._as_of = as_of
        self._refresh_s = refresh_s
        self._max_votes = max_votes
        self._background = background
        self._clock = clock
        self._refreshed_at = float("-inf")
        self._lock = threading.Lock()  # guards the memory: refresh writes, boosts read
        self._refreshing = threading.Lock()  # one refresh at a time; others go on without waiting
        self.pending: threading.Thread | None = None  # the last background refresh
        self.encoded = 0  # query texts re-encoded so far (votes logged under another encoder)

    @property
    def model_version(self) -> str:
        return self.memory.model_version

    @property
    def enabled(self) -> bool:
        return self.memory.params.enabled

    def boosts(self, vector: Vectors, now: float | None = None) -> dict[str, float]:
        with self._lock:
            return self.memory.boosts(vector, self._clock() if now is None else now)

    def maybe_refresh(self) -> int:
        """Refresh when the last one is older than refresh_s: inline, the number of votes applied; in the
        background, 0 at once (the thread is `self.pending`). Also 0 when fresh or a refresh is running."""
        if self._clock() - self._refreshed_at < self._refresh_s:
            return 0
        if not self._background:
            return self.refresh()
        if not self._refreshing.acquire(blocking=False):
            return 0  # one refresh at a time; this request answers from the memory as it is
        try:
            self.pending = threading.Thread(target=self._refresh_held, name="memory-refresh", daemon=True)
            self.pending.start()
        except BaseException:
            self._refreshing.release()
            raise
        return 0

    def refresh(self) -> int:
        """Read and apply the votes since the last refresh, now; 0 when another refresh is running."""
        if not self._refreshing.acquire(blocking=False):
            return 0
        return self._refresh_held()

    def _refresh_held(self) -> int:
        try:
            started = self._clock()
            try:
                applied = self._read_new_votes()
            except RagError as exc:
                logger.warning("feedback memory refresh failed; retrying later", extra={"error": str(exc)})
                return 0
            except Exception:  # a background thread has nobody to raise to: log, keep serving, retry later
                logger.exception("feedback memory refresh crashed; retrying later")
                return 0
            self._refreshed_at = started
            return applied
        finally:
            self._refreshing.release()

    def _read_new_votes(self) -> int:
        """The votes since the last refresh (minus the overlap), oldest first, READ_BATCH at a time, each batch
        applied before the next is read; at most max_votes new ones (the overlap's re-reads do not count, or a
        burst larger than max_votes within the overlap would stop every later refresh short of its end)."""
        last = self._as_of
        since, read, applied = last - self.OVERLAP_S, 0, 0
        batch_size = self.READ_BATCH
        while read < self._max_votes:
            want = min(batch_size, self._max_votes - read)
            batch = self._feedback.votes(since=since, limit=want)
            applied += self.apply(batch)
            read += sum(1 for v in batch if v.created_at > last)
            if len(batch) < want:
                break
            next_since = batch[-1].created_at - self._TIE_S
            if next_since <= since:  # a whole batch of one instant: read from it again, all that is left at once
                batch_size = self._max_votes
                continue
            since = next_since
        return applied

    def apply(self, votes: Iterable[Vote]) -> int:
        """Add votes (oldest first). A query the memory does not know takes its logged embedding when that was
        made by this memory's encoder, else it is re-encoded once, with all such queries in one batch."""
        votes = sorted(votes, key=lambda v: v.created_at)
        if not votes:
            return 0
        fresh: dict[str, Vectors] = {}
        to_encode: list[str] = []
        for v in votes:
            if v.query in fresh or self.memory.knows(v.query):
                continue
            if v.embedding and v.pair.model_version == self.model_version:
                fresh[v.query] = unpack_vector(v.embedding)
            elif v.query not in to_encode:
                to_encode.append(v.query)
        if to_encode:
            fresh.update(zip(to_encode, self._encoder.encode(to_encode), strict=True))
            self.encoded += len(to_encode)
        applied = 0
        for start in range(0, len(votes), self.APPLY_CHUNK):
            with self._lock:  # per chunk: a request's boosts wait for one chunk, never for the whole refresh
                for v in votes[start : start + self.APPLY_CHUNK]:
                    try:
                        applied += self.memory.add(MemoryVote.of(v), fresh.get(v.query))
                    except ValueError as exc:  # a logged vector of another dimension: re-encode next time
                        logger.warning("feedback memory skipped a vote", extra={"error": str(exc)})
        self._as_of = max(self._as_of, votes[-1].created_at)
        return applied


class MemorySnapshot(NamedTuple):
    """A version's shipped memory as read from S3, or None (no snapshot, or an unusable one), and the time
    from which the vote log must be replayed on top of it."""

    memory: VoteMemory | None
    as_of: float


def read_snapshot(
    store: ArtifactStore,
    version: str,
    defaults: MemoryParams,
    *,
    max_age_days: float = 90.0,
    clock: Callable[[], float] = time.time,
) -> MemorySnapshot:
    """models/<version>/memory.npz (its tuned threshold and weight kept), or, without a usable one, None and
    the start of the last max_age_days. Needs no encoder, so a cold start reads it while the encoder loads."""
    try:
        memory, meta = VoteMemory.from_bytes(store.get_bytes(memory_key(version)), defaults)
        return MemorySnapshot(memory, float(meta.get("as_of", 0.0)))  # open_live_memory checks version and dim
    except (ArtifactNotFound, CorruptArtifact) as exc:
        if isinstance(exc, CorruptArtifact):
            logger.error("feedback memory snapshot unusable; rebuilding from the vote log", extra={"error": str(exc)})
        return MemorySnapshot(None, oldest_vote(clock(), max_age_days))


def oldest_vote(now: float, max_age_days: float) -> float:
    """The time before which votes are no longer loaded (a memory rebuilt from the log, the smoke step's)."""
    return now - max_age_days * DAY_S


def open_live_memory(
    store: ArtifactStore,
    feedback: FeedbackStore,
    encoder: Encoder,
    defaults: MemoryParams,
    *,
    snapshot: MemorySnapshot | None = None,
    refresh_s: float = 10.0,
    depth: int = 40,
    max_votes: int = 20_000,
    max_age_days: float = 90.0,
    background: bool = True,
    clock: Callable[[], float] = time.time,
) -> LiveMemory:
    """The live memory of `encoder`'s version: its shipped snapshot (`snapshot` when already read) plus the
    votes since, or, without one (a bootstrapped model, or a damaged file), every vote of the last
    max_age_days. Loaded fully before the pair it belongs to goes live."""
    version = encoder.version
    if snapshot is None:
        snapshot = read_snapshot(store, version, defaults, max_age_days=max_age_days, clock=clock)
    memory, as_of = snapshot
    if memory is not None and (memory.model_version != version or memory.dim != encoder.dim):
        logger.error(
            "feedback memory snapshot unusable; rebuilding from the vote log",
            extra={"error": f"{memory_key(version)} was built for {memory.model_version}/{memory.dim}"},
        )
        memory = None
    if memory is None:
        memory, as_of = VoteMemory(version, encoder.dim, defaults, clock()), oldest_vote(clock(), max_age_days)
    live = LiveMemory(
        memory,
        feedback,
        encoder,
        as_of=as_of,
        refresh_s=refresh_s,
        depth=depth,
        max_votes=max_votes,
        background=background,
        clock=clock,
    )
    live.refresh()  # inline: the pair goes live with its memory current
    return live
