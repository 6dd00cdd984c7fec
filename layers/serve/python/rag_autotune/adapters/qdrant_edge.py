"""VectorIndex on Qdrant Edge: one embedded shard per index version, shipped through the ArtifactStore.

Layout in the store, for version V under prefix P (default "indexes/"):
  P/V/shard.tar   the shard directory as a plain tar, each file cut after its last non-zero byte (FORMAT)
  P/V/info.json   {"points", "dim", "format", "hnsw", "build_id", "sizes", "sparse"}, written LAST: a version exists
                  only once info.json does, so a reader never sees half a version.

Why trimmed and not gzip: a fresh shard preallocates 32 MB pages (payload, vectors) whose tails are zeros.
gzip would pack them a little smaller, but gunzip costs CPU at every cold start, while a plain tar of the
trimmed files unpacks almost at once (the README's benchmarks have the figures). `sizes` restores each file's
length after unpacking (the tail becomes a sparse hole: free). Older gzip archives without `sizes` still load.
Edge 0.9 has no API that writes a snapshot (snapshots come from a Qdrant server), so packing is ours.

Local cache: cache_dir/V/{shard/, info.json}. A directory there is complete by construction (unpacked into a
temp dir, then renamed); its build_id is checked against the store's info.json, so a version name that
was deleted and rebuilt is never served from stale files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    FeedbackItem,
    FeedbackNaiveQuery,
    FieldCondition,
    Filter,
    Fusion,
    MatchAny,
    Modifier,
    NaiveFeedbackStrategy,
    Point,
    Prefetch,
    Query,
    QueryRequest,
    ScrollRequest,
    SearchParams,
    UpdateOperation,
    VectorStorageDatatype,
)

from ..domain import Chunk, Found, Hit, RetrievalMode
from ..errors import ConflictError, CorruptArtifact, InvalidInput, RagError, UpstreamError
from ..ports import ArtifactStore, Vectors
from ..retrieval import dense_fallback
from ..steering import Steer
from .qdrant_common import (
    EMBED_HASH,
    RRF_K,
    SPARSE,
    batch_rows,
    check_version,
    chunk_payload,
    document_sparse,
    payload_chunk,
    plain_vector,
    query_sparse,
)

FORMAT = "qdrant-edge-0.9/tar+trimmed"
SNAPSHOT = "shard.tar"
INFO = "info.json"
_UPSERT_BATCH = 1024
_SCROLL_PAGE = 1024


def _vec(row: np.ndarray) -> Any:
    """Edge takes numpy rows directly (much faster than converting to a list); its stubs only say list[float]."""
    return row


def _fusion(mode: RetrievalMode) -> Any:
    """The stubs type Fusion's variants as nested classes, not as the Fusion that QueryRequest takes."""
    return Fusion.Rrf(k=RRF_K) if mode == "hybrid-rrf" else Fusion.Dbsf()


def _steered(target: np.ndarray, steer: Steer) -> Any:
    """The engine's relevance feedback query: the target, one 👍 and one 👎 item, the fitted coefficients."""
    items = [
        FeedbackItem(_vec(steer.positive), steer.positive_score),
        FeedbackItem(_vec(steer.negative), steer.negative_score),
    ]
    return Query.FeedbackNaive(
        FeedbackNaiveQuery(_vec(target), items, NaiveFeedbackStrategy(steer.a, steer.b, steer.c))
    )


@contextlib.contextmanager
def _edge(what: str) -> Iterator[None]:
    """Edge raises bare Exception("Service runtime error: ..."); callers get UpstreamError."""
    try:
        yield
    except RagError:
        raise
    except Exception as exc:
        raise UpstreamError(f"qdrant edge {what}: {exc}") from exc


@dataclass
class _Open:
    shard: EdgeShard
    dim: int
    points: int
    sparse: bool = False
    users: int = 0
    evicted: bool = False


class EdgeVectorIndex:
    def __init__(
        self,
        store: ArtifactStore,
        cache_dir: Path,
        prefix: str = "indexes/",
        *,
        hnsw_threshold: int = 50_000,
        hnsw_ef: int | None = None,
        max_open: int = 3,
    ) -> None:
        """hnsw_threshold: build an HNSW graph (optimize()) only for shards with at least this many points;
        below it Edge scans every vector, which is exact and about as fast (20k x 384: see
        scripts/bench_vector_index.py). hnsw_ef: search-time ef for HNSW shards (None: Qdrant's default).
        max_open: shards kept open (and unpacked on disk) at once, least recently used closed first."""
        self._store = store
        self._cache = Path(cache_dir)
        self._prefix = prefix if prefix.endswith("/") else prefix + "/"
        self._hnsw_threshold = hnsw_threshold
        self._params = SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None
        self._max_open = max(1, max_open)
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Open] = OrderedDict()  # LRU order: oldest first
        self._loading: dict[str, threading.Lock] = {}

    # -- keys --------------------------------------------------------------------------------------------

    def _key(self, version: str, name: str) -> str:
        return f"{self._prefix}{version}/{name}"

    # -- build ---------------------------------------------------------------------------------------------

    def build(
        self, version: str, dim: int, batches: Iterable[tuple[Sequence[Chunk], Vectors]], *, sparse: bool = True
    ) -> int:
        check_version(version)
        if dim <= 0:
            raise InvalidInput(f"dim must be positive, got {dim}")
        if self._store.head_etag(self._key(version, INFO)) is not None:
            raise ConflictError(f"index version {version} already exists")
        self._store.delete_prefix(self._key(version, ""))  # orphans of a run that died before info.json
        self._cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self._cache, prefix=f".build-{version}-"))
        shard: EdgeShard | None = None
        try:
            with _edge(f"create shard for {version}"):
                shard = EdgeShard.create(
                    str(tmp / "shard"),
                    # No WAL: written once, and flush() makes it durable (saves 64 MB of WAL files).
                    # Float16 storage halves the dense vectors, the largest part of the snapshot a cold start
                    # downloads. Unit vectors keep about three significant digits: only near-ties can change
                    # places (the README's "Hybrid retrieval" section compares both precisions).
                    EdgeConfig(
                        vectors=EdgeVectorParams(
                            size=dim, distance=Distance.Cosine, datatype=VectorStorageDatatype.Float16
                        ),
                        sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)} if sparse else None,
                        wal_enabled=False,
                    ),
                )
            n = 0
            for chunks, vectors in batches:
                if not chunks:
                    continue
                rows = batch_rows(chunks, vectors, dim)
                for start in range(0, len(chunks), _UPSERT_BATCH):
                    points = [
                        Point(
                            n + i,
                            {"": _vec(rows[start + i]), SPARSE: document_sparse(c)}
                            if sparse
                            else _vec(rows[start + i]),
                            chunk_payload(c),
                        )
                        for i, c in enumerate(chunks[start : start + _UPSERT_BATCH])
                    ]
                    with _edge(f"upsert into {version}"):
                        shard.update(UpdateOperation.upsert_points(points))
                    n += len(points)
            hnsw = n >= self._hnsw_threshold
            with _edge(f"seal shard {version}"):
                shard.flush()
                if hnsw:
                    shard.optimize()
                    shard.flush()
                shard.close()
            shard = None
            archive = tmp / SNAPSHOT
            sizes = _pack(tmp / "shard", archive)
            self._store.upload_file(self._key(version, SNAPSHOT), archive)
            info = {
                "points": n,
                "dim": dim,
                "format": FORMAT,
                "hnsw": hnsw,
                "build_id": uuid.uuid4().hex,
                "sizes": sizes,
                "sparse": sparse,
            }
            self._store.put_bytes(self._key(version, INFO), json.dumps(info).encode(), "application/json")
            return n
        except BaseException:
            if shard is not None:
                with contextlib.suppress(Exception):
                    shard.close()
            with contextlib.suppress(Exception):
                self._store.delete_prefix(self._key(version, ""))
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- reads ---------------------------------------------------------------------------------------------

    def search(self, version: str, vector: Vectors, limit: int) -> list[Hit]:
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._use(version) as entry:
            if query.shape[0] != entry.dim:
                raise InvalidInput(f"query has dim {query.shape[0]}, index {version} has {entry.dim}")
            if limit <= 0 or entry.points == 0:
                return []
            with _edge(f"query {version}"):
                found = entry.shard.query(
                    QueryRequest(limit=limit, query=Query.Nearest(_vec(query)), with_payload=True, params=self._params)
                )
        return [Hit(payload_chunk(p.payload), float(p.score)) for p in found]

    def has_sparse(self, version: str) -> bool:
        with self._use(version) as entry:
            return entry.sparse

    def query(
        self, version: str, vector: Vectors, text: str, limit: int, mode: RetrievalMode, steer: Steer | None = None
    ) -> Found:
        if mode == "dense" and steer is None:
            return Found(self.search(version, vector, limit), "dense")
        dense = np.asarray(vector, dtype=np.float32).reshape(-1)
        terms = query_sparse(text) if mode != "dense" else None
        with self._use(version) as entry:
            if dense.shape[0] != entry.dim:
                raise InvalidInput(f"query has dim {dense.shape[0]}, index {version} has {entry.dim}")
            reason = dense_fallback(mode, entry.sparse, len(terms.indices) if terms is not None else 0)
            answered: RetrievalMode = "dense" if reason or terms is None else mode
            if limit <= 0 or entry.points == 0:
                return Found([], answered, reason)
            nearest = _steered(dense, steer) if steer is not None else Query.Nearest(_vec(dense))
            if answered == "dense" or terms is None:
                request = QueryRequest(limit=limit, query=nearest, with_payload=True, params=self._params)
            else:
                request = QueryRequest(
                    limit=limit,
                    query=_fusion(mode),
                    prefetches=[
                        Prefetch(limit=limit, query=nearest, params=self._params),
                        Prefetch(limit=limit, query=Query.Nearest(terms, using=SPARSE)),
                    ],
                    with_payload=True,
                )
            with _edge(f"query {version}"):
                found = entry.shard.query(request)
        hits = [Hit(payload_chunk(p.payload), float(p.score)) for p in found]
        return Found(hits, answered, reason, steered=steer is not None)

    def chunk_vectors(self, version: str, chunk_ids: Collection[str]) -> dict[str, Vectors]:
        wanted = set(chunk_ids)
        # A few chunks of many: the engine filters (an ingest's hashes are most of the version: it scans).
        match = Filter(must=[FieldCondition(key="chunk_id", match=MatchAny(any=sorted(wanted)))]) if wanted else None
        return self._stored_vectors(version, "chunk_id", wanted, match)

    def warm(self, version: str) -> None:
        with self._use(version):
            pass

    def count(self, version: str) -> int:
        with self._lock:
            entry = self._open.get(check_version(version))
            if entry is not None:
                return entry.points
        return int(self._read_info(version)["points"])

    def chunks(self, version: str) -> Iterator[Chunk]:
        first, offset = self._page(version, None)  # eager: an unknown version raises here, not on next()
        return self._pages(version, first, offset)

    def _pages(self, version: str, page: list[Chunk], offset: Any) -> Iterator[Chunk]:
        yield from page
        while offset is not None:
            page, offset = self._page(version, offset)
            yield from page

    def _page(self, version: str, offset: Any) -> tuple[list[Chunk], Any]:
        with self._use(version) as entry:
            if entry.points == 0:
                return [], None
            with _edge(f"scroll {version}"):
                records, nxt = entry.shard.scroll(
                    ScrollRequest(offset=offset, limit=_SCROLL_PAGE, with_payload=True, with_vector=False)
                )
        return [payload_chunk(r.payload) for r in records], nxt

    def vectors(self, version: str, hashes: Collection[str]) -> dict[str, Vectors]:
        return self._stored_vectors(version, EMBED_HASH, set(hashes), None)

    def _stored_vectors(self, version: str, field: str, wanted: set[str], match: Filter | None) -> dict[str, Vectors]:
        """The stored vector of each point whose payload `field` is in `wanted`, keyed by that value."""
        found: dict[str, Vectors] = {}
        offset: Any = None
        while True:
            with self._use(version) as entry:
                if entry.points == 0 or not wanted:
                    return found
                with _edge(f"scroll {version}"):
                    records, offset = entry.shard.scroll(
                        ScrollRequest(
                            offset=offset, limit=_SCROLL_PAGE, filter=match, with_payload=True, with_vector=True
                        )
                    )
            for r in records:
                key = (r.payload or {}).get(field)
                if key in wanted and r.vector is not None:
                    found[str(key)] = plain_vector(r.vector)
            if offset is None:
                return found

    def versions(self) -> list[str]:
        suffix = "/" + INFO
        found = set()
        for key in self._store.list_keys(self._prefix):
            rest = key[len(self._prefix) :]
            if rest.endswith(suffix) and "/" not in rest[: -len(suffix)]:
                found.add(rest[: -len(suffix)])
        return sorted(found)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def delete(self, version: str) -> None:
        check_version(version)
        # info.json first: the version stops existing at once, then its snapshot goes.
        self._store.delete_prefix(self._key(version, INFO))
        self._store.delete_prefix(self._key(version, ""))
        with self._lock:
            entry = self._open.pop(version, None)
            if entry is not None:
                self._retire(version, entry)
            elif version not in self._loading:
                shutil.rmtree(self._cache / version, ignore_errors=True)

    def publish(self, version: str) -> None:
        """Nothing to do: the S3 manifest is the pointer for Edge."""

    def close(self) -> None:
        """Closes every open shard (tests, process shutdown). Local files stay for the next process."""
        with self._lock:
            for version in list(self._open):
                entry = self._open.pop(version)
                entry.evicted = True
                if entry.users == 0:
                    with contextlib.suppress(Exception):
                        entry.shard.close()

    # -- the open-shard cache -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _use(self, version: str) -> Iterator[_Open]:
        entry = self._acquire(check_version(version))
        try:
            yield entry
        finally:
            self._release(version, entry)

    def _acquire(self, version: str) -> _Open:
        with self._lock:
            entry = self._hit(version)
            if entry is not None:
                return entry
            load_lock = self._loading.setdefault(version, threading.Lock())
        with load_lock:  # one loader per version; other versions keep serving meanwhile
            with self._lock:
                entry = self._hit(version)
                if entry is not None:
                    return entry
            try:
                shard, info = self._load(version)
            except BaseException:
                with self._lock:
                    self._loading.pop(version, None)
                raise
            with self._lock:
                self._loading.pop(version, None)
                entry = _Open(shard, int(info["dim"]), int(info["points"]), bool(info.get("sparse")), users=1)
                self._open[version] = entry
                while len(self._open) > self._max_open:
                    old_version, old = self._open.popitem(last=False)
                    self._retire(old_version, old)
                return entry

    def _hit(self, version: str) -> _Open | None:
        """Under self._lock."""
        entry = self._open.get(version)
        if entry is not None:
            entry.users += 1
            self._open.move_to_end(version)
        return entry

    def _release(self, version: str, entry: _Open) -> None:
        with self._lock:
            entry.users -= 1
            if entry.evicted and entry.users == 0:
                self._close(version, entry)

    def _retire(self, version: str, entry: _Open) -> None:
        """Under self._lock: out of the cache; closed now, or by its last user."""
        entry.evicted = True
        if entry.users == 0:
            self._close(version, entry)

    def _close(self, version: str, entry: _Open) -> None:
        """Under self._lock. Local files go too (Lambda /tmp is small), unless the version is back in use."""
        with contextlib.suppress(Exception):
            entry.shard.close()
        if version not in self._open and version not in self._loading:
            shutil.rmtree(self._cache / version, ignore_errors=True)

    # -- download and unpack ------------------------------------------------------------------------------

    def _read_info(self, version: str) -> dict[str, Any]:
        raw = self._store.get_bytes(self._key(check_version(version), INFO))  # ArtifactNotFound if unknown
        try:
            info = json.loads(raw)
            int(info["points"]), int(info["dim"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptArtifact(f"{self._key(version, INFO)}: {exc}") from exc
        if not isinstance(info, dict):
            raise CorruptArtifact(f"{self._key(version, INFO)}: not an object")
        return info

    def _load(self, version: str) -> tuple[EdgeShard, dict[str, Any]]:
        info = self._read_info(version)
        local = self._cache / version
        if not self._is_cached(local, info):
            self._unpack(version, info, local)
        try:
            return EdgeShard.load(str(local / "shard")), info
        except Exception as exc:
            shutil.rmtree(local, ignore_errors=True)
            raise CorruptArtifact(f"index {version}: cannot load shard: {exc}") from exc

    @staticmethod
    def _is_cached(local: Path, info: dict[str, Any]) -> bool:
        try:
            cached = json.loads((local / INFO).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(cached, dict) and cached.get("build_id") == info.get("build_id")

    def _unpack(self, version: str, info: dict[str, Any], local: Path) -> None:
        self._cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self._cache, prefix=f".load-{version}-"))
        try:
            archive = tmp / SNAPSHOT
            self._store.download_file(self._key(version, SNAPSHOT), archive)
            try:
                with tarfile.open(archive, "r:*") as tar:
                    tar.extractall(tmp / "shard", filter="data")
                _restore_sizes(tmp / "shard", info.get("sizes") or {})
            except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
                raise CorruptArtifact(f"{self._key(version, SNAPSHOT)}: {exc}") from exc
            archive.unlink()
            (tmp / INFO).write_text(json.dumps(info))
            shutil.rmtree(local, ignore_errors=True)  # stale build of the same name, or a torn directory
            try:
                tmp.rename(local)
            except OSError:  # another process sharing cache_dir won the race
                if not self._is_cached(local, info):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# -- the snapshot format --------------------------------------------------------------------------------------

_SCAN = 1 << 20


def _data_length(path: Path) -> int:
    """Length of the file up to its last non-zero byte (scanning back from the end, 1 MB at a time)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    data = np.memmap(path, dtype=np.uint8, mode="r")
    end = size
    while end > 0:
        start = max(0, end - _SCAN)
        nonzero = np.flatnonzero(data[start:end])
        if nonzero.size:
            return start + int(nonzero[-1]) + 1
        end = start
    return 0


def _pack(src: Path, archive: Path) -> dict[str, int]:
    """Plain tar of src with every regular file cut after its last non-zero byte; returns relpath → size."""
    sizes: dict[str, int] = {}
    with tarfile.open(archive, "w") as tar:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src).as_posix()
            info = tar.gettarinfo(str(path), arcname=rel)
            if not info.isfile():
                tar.addfile(info)
                continue
            sizes[rel] = info.size
            info.size = _data_length(path)
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    return sizes


def _restore_sizes(root: Path, sizes: dict[str, int]) -> None:
    """Give each unpacked file its original length back (zeros past the data, as a sparse hole)."""
    base = root.resolve()
    for rel, size in sizes.items():
        path = (root / rel).resolve()
        if base not in path.parents or not path.is_file() or int(size) < path.stat().st_size:
            raise ValueError(f"sizes entry {rel!r} does not match the archive")
        os.truncate(path, int(size))
