"""The serving side of the live pointer: which (encoder, index) pair answers right now.

A request takes one `LivePair` reference and uses only it, so a swap mid-request cannot mix versions.
The manifest is re-checked at most every `ttl_s` seconds with a HEAD (ETag); a new pair is fully loaded
(encoder session built, index shard opened) before it replaces the old reference.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .domain import Manifest, RetrievalMode, VersionPair
from .errors import NotReady, RagError
from .memory import LiveMemory
from .observability import logger
from .ports import ArtifactStore, Encoder, VectorIndex
from .versions import MANIFEST_KEY, read_manifest, stored_mode

RETRY_FAILED_S = 60.0  # a manifest whose pair failed to load is retried this often, not on every TTL


@dataclass(frozen=True)
class LivePair:
    pair: VersionPair
    encoder: Encoder
    index: VectorIndex
    manifest: Manifest
    etag: str
    memory: LiveMemory | None = None  # the feedback memory of pair.model_version (None: switched off)
    mode: RetrievalMode = "dense"  # how the index version is queried, as its stats say (the smoke step chose)


class LiveState:
    def __init__(
        self,
        store: ArtifactStore,
        index: VectorIndex,
        load_encoder: Callable[[str], Encoder],
        ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        load_memory: Callable[[Encoder], LiveMemory | None] | None = None,
        prefetch_memory: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._index = index
        self._load_encoder = load_encoder
        self._ttl_s = ttl_s
        self._clock = clock
        self._load_memory = load_memory
        self._prefetch_memory = prefetch_memory  # what load_memory needs that does not need the encoder
        self._live: LivePair | None = None
        self._checked_at = float("-inf")
        # model version → its encoder and feedback memory: the pair in use and the one before it
        self._loaded: dict[str, tuple[Encoder, LiveMemory | None]] = {}
        self._lock = threading.Lock()
        self._failed: tuple[str, str, float] | None = None  # (manifest etag, why, when) of a pair that won't load

    def current(self) -> LivePair:
        """The live pair, re-checking the manifest when the last check is older than ttl_s.
        Raises NotReady when nothing is live."""
        live = self._live
        if live is not None and self._clock() - self._checked_at < self._ttl_s:
            return live
        with self._lock:
            live = self._live
            if live is not None and self._clock() - self._checked_at < self._ttl_s:
                return live  # another thread refreshed while we waited
            etag = self._store.head_etag(MANIFEST_KEY)
            now = self._clock()
            failed = self._failed
            retry_later = (
                failed is not None and failed[0] == etag and now - failed[2] < max(self._ttl_s, RETRY_FAILED_S)
            )
            if (live is None or etag != live.etag) and not (retry_later and live is not None):
                try:
                    live = self._load() if etag is not None else None
                    self._failed = None
                except RagError as exc:
                    self._failed = (etag or "", str(exc), now)
                    if live is None:
                        raise
                    # The new pair cannot be loaded (e.g. a damaged model): keep answering from the pair we
                    # have, consistently; /health says degraded; the same manifest is retried after a while.
                    logger.exception(
                        "cannot load the new live pair; still serving the previous one",
                        extra={"serving": live.pair.as_dict(), "manifest_etag": etag},
                    )
            self._checked_at = self._clock()
            self._live = live
        if live is None:
            raise NotReady("no model/index pair is live: run `rag-autotune bootstrap` then `rag-autotune ingest`")
        return live

    @property
    def degraded(self) -> str | None:
        """Why the manifest's pair is not the one serving (it failed to load), or None when all is well."""
        failed, live = self._failed, self._live
        return failed[1] if failed is not None and live is not None and failed[0] != live.etag else None

    def _load(self) -> LivePair | None:
        found = read_manifest(self._store)
        if found is None:
            return None
        manifest, etag = found
        pair = manifest.live
        loaded = self._loaded.get(pair.model_version)
        if loaded is None:
            # Fetch and open the encoder, the shard and the memory snapshot at once (mostly S3 I/O and native
            # code that releases the GIL): at a cold start that saves all but the longest.
            with ThreadPoolExecutor(2, thread_name_prefix="load-pair") as pool:
                pending = pool.submit(self._load_encoder, pair.model_version)
                prefetch = pool.submit(self._prefetch_memory, pair.model_version) if self._prefetch_memory else None
                try:
                    self._index.warm(pair.index_version)
                finally:
                    encoder = pending.result()  # raises the encoder's error; waits even when warm failed
                    failed = prefetch.exception() if prefetch is not None else None
                    if failed is not None:  # load_memory reads the snapshot itself
                        logger.warning("memory prefetch failed", extra={"error": str(failed)})
            # The memory of this encoder's version, loaded before the pair goes live: never another version's.
            memory = self._load_memory(encoder) if self._load_memory is not None else None
            loaded = (encoder, memory)
            # Keep only the model in use and the one before it (rollback is then instant).
            self._loaded = {k: v for k, v in self._loaded.items() if k == self._current_model()}
            self._loaded[pair.model_version] = loaded
        else:
            self._index.warm(pair.index_version)  # open the shard now, not on the first user's request
        encoder, memory = loaded
        if memory is not None:  # the voted chunks' vectors steering feeds the engine: from this index version
            memory.serve_from(pair.index_version)
        mode, why = stored_mode(self._store, pair.index_version)
        logger.info("live retrieval mode", extra={"index": pair.index_version, "mode": mode, "why": why})
        return LivePair(pair, encoder, self._index, manifest, etag, memory, mode)

    def _current_model(self) -> str | None:
        return self._live.pair.model_version if self._live else None

    def invalidate(self) -> None:
        """Force a manifest check on the next request (used after a local swap)."""
        self._checked_at = float("-inf")
