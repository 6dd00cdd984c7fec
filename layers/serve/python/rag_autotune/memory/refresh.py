"""The serving side: one memory per live encoder, kept current from the vote log.

Version tie: a `VoteMemory` names the encoder version whose vectors it holds. `LiveMemory` refuses any other
encoder, and adds a vote's logged embedding only when the vote's model_version is its own; otherwise it
re-encodes that query text once with its encoder. A tune run ships a rebuilt memory with each new model
(models/<version>/memory.npz), so after a swap no query meets vectors of another encoder.

No I/O here beyond the ports LiveMemory is given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from ..domain import Vote
from ..errors import RagError
from ..observability import logger
from ..ports import ArtifactStore, Encoder, FeedbackStore, Vectors
from ..steering import Steer
from .rules import MemoryParams, MemoryVote, VoteMemory
from .store import MemorySnapshot, memory_key, oldest_vote, read_snapshot
from .vectors import unpack_vector

ChunkVectors = Callable[[str, Sequence[str]], dict[str, Vectors]]  # (index version, chunk ids) → vectors


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
        chunk_vectors: ChunkVectors | None = None,
        steering: bool = True,
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
        self._chunk_vectors = chunk_vectors
        self._steering = steering  # False: RAG_STEERING_ENABLED is off, whatever the snapshot's fit says
        # The index version of this encoder that serves now (LiveState sets it when the pair loads): voted
        # chunks' vectors are looked up there.
        self.index_version: str | None = None
        self._absent: set[str] = set()  # voted chunks the serving index version does not hold

    @property
    def model_version(self) -> str:
        return self.memory.model_version

    @property
    def enabled(self) -> bool:
        return self.memory.params.enabled

    def boosts(self, vector: Vectors, now: float | None = None) -> dict[str, float]:
        with self._lock:
            return self.memory.boosts(vector, self._clock() if now is None else now)

    def lookup(self, vector: Vectors, now: float | None = None) -> tuple[dict[str, float], Steer | None]:
        """The question's boosts (when the memory is enabled) and steering (when on), from one search."""
        with self._lock:
            return self.memory.lookup(
                vector, self._clock() if now is None else now, boost=self.enabled, steer=self.steering
            )

    @property
    def steering(self) -> bool:
        return self._steering and self.memory.steering.enabled

    def serve_from(self, index_version: str) -> None:
        """The index version of this encoder that now serves: voted chunks' vectors are looked up there."""
        if index_version != self.index_version:
            self.index_version, self._absent = index_version, set()
        self.resolve_doc_vectors()

    def resolve_doc_vectors(self) -> int:
        """Look up the vectors of voted chunks not known yet, in the serving index version; how many were found.
        Errors are logged: steering then leaves those documents out until the next refresh."""
        if not self.steering or self._chunk_vectors is None or self.index_version is None:
            return 0
        with self._lock:
            missing = {c: d for c, d in self.memory.missing_doc_vectors().items() if c not in self._absent}
        if not missing:
            return 0
        try:
            found = self._chunk_vectors(self.index_version, sorted(missing))
        except RagError as exc:
            logger.warning("voted chunks' vectors not found; steering without them", extra={"error": str(exc)})
            return 0
        self._absent.update(c for c in missing if c not in found)  # not in this version: not asked again
        with self._lock:
            for chunk_id, vector in found.items():
                doc = missing[chunk_id]
                if self.memory.doc_chunks.get(doc) == chunk_id:  # not voted on another chunk meanwhile
                    self.memory.doc_vectors[doc] = vector
        return len(found)

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
            self.resolve_doc_vectors()
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
    chunk_vectors: ChunkVectors | None = None,
    steering: bool = True,
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
        chunk_vectors=chunk_vectors,
        steering=steering,
    )
    live.refresh()  # inline: the pair goes live with its memory current
    return live
