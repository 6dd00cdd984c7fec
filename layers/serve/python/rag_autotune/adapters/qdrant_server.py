"""VectorIndex on a Qdrant server (or qdrant-client's local mode): one collection per index version.

A collection is created with metadata {"rag_autotune": "building"} and marked "ready" (with its point count)
only after the last upsert; versions() lists ready collections only, and a build that finds a collection
that never became ready (a run that died) drops it and starts over. build() is begin, write_part per batch,
seal: the same three calls the tune's embed Map makes from many Lambdas at once (ports.PartWriter), with
point ids that are positions in the version, so a retried part overwrites its points.

publish() moves the serving alias with ONE update_collection_aliases call (delete + create is atomic on
the server). Searches name the version's collection directly, so a response never mixes versions; the
alias is for other readers of the cluster. The collection the alias points to cannot be deleted.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from ..domain import Chunk, Found, Hit, RetrievalMode
from ..errors import ArtifactNotFound, ConflictError, IncompleteVersion, InvalidInput, RagError, UpstreamError
from ..observability import logger
from ..ports import Vectors
from ..retrieval import dense_fallback
from ..steering import Steer, steered_matrix_scores
from .qdrant_common import EMBED_HASH, RRF_K, SPARSE, document_sparse, plain_vector, query_sparse
from .qdrant_common import batch_rows as _rows
from .qdrant_common import check_version as _check_version
from .qdrant_common import chunk_payload as _payload
from .qdrant_common import payload_chunk as _chunk

_STATE = "rag_autotune"
_SCROLL_PAGE = 1024
_HASHES_PER_FILTER = 512  # keeps each scroll request's filter small
FALLBACK_POOL = 100  # chunks re-scored by steering.py's formula when the server has no relevance feedback query


@contextlib.contextmanager
def _sdk(what: str) -> Iterator[None]:
    """SDK errors → domain errors. Server: HTTP status; local mode: ValueError('Collection x not found')."""
    try:
        yield
    except RagError:
        raise
    except UnexpectedResponse as exc:
        if exc.status_code == 404:
            raise ArtifactNotFound(what) from exc
        if exc.status_code == 409:
            raise ConflictError(f"{what}: {exc}") from exc
        if exc.status_code in (400, 422):
            raise InvalidInput(f"{what}: {exc}") from exc
        raise UpstreamError(f"qdrant {what}: {exc}") from exc
    except ValueError as exc:
        if "not found" in str(exc).lower():
            raise ArtifactNotFound(what) from exc
        raise UpstreamError(f"qdrant {what}: {exc}") from exc
    except Exception as exc:
        raise UpstreamError(f"qdrant {what}: {exc}") from exc


def _steered(target: np.ndarray, steer: Steer) -> models.RelevanceFeedbackQuery:
    """Qdrant's relevance feedback query (server 1.17+): the target, one 👍 and one 👎 item, the coefficients."""
    return models.RelevanceFeedbackQuery(
        relevance_feedback=models.RelevanceFeedbackInput(
            target=target.tolist(),
            feedback=[
                models.FeedbackItem(example=steer.positive.tolist(), score=steer.positive_score),
                models.FeedbackItem(example=steer.negative.tolist(), score=steer.negative_score),
            ],
            strategy=models.NaiveFeedbackStrategy(
                naive=models.NaiveFeedbackStrategyParams(a=steer.a, b=steer.b, c=steer.c)
            ),
        )
    )


class ServerVectorIndex:
    def __init__(
        self,
        client: QdrantClient,
        alias: str = "rag-live",
        collection_prefix: str = "rag_",
        *,
        batch_size: int = 256,
        shards: int = 1,
        replication: int = 1,
    ) -> None:
        self._client = client
        self._alias = alias
        self._prefix = collection_prefix
        self._batch = batch_size
        self._shards = shards
        self._replication = replication
        self._building: dict[str, tuple[int, bool]] = {}  # versions begun by this process: version → dim, sparse
        self._dims: dict[str, tuple[int, bool]] = {}  # ready versions seen by this process: version → dim, sparse
        self._native_feedback = True  # False once the server refused a relevance feedback query (before 1.17)
        self._lock = threading.Lock()

    @classmethod
    def connect(
        cls, url: str, api_key: str | None = None, *, shards: int = 1, replication: int = 1
    ) -> ServerVectorIndex:
        """The index on the Qdrant server at `url` (QDRANT_URL, QDRANT_API_KEY); new collections get `shards`
        shards of `replication` copies each (RAG_QDRANT_SHARDS, RAG_QDRANT_REPLICATION)."""
        return cls(QdrantClient(url=url, api_key=api_key), shards=shards, replication=replication)

    def _name(self, version: str) -> str:
        return self._prefix + _check_version(version)

    def _state(self, name: str) -> dict[str, Any] | None:
        """The collection's build state, or None when there is no such collection."""
        try:
            with _sdk(name):
                meta = self._client.get_collection(name).config.metadata or {}
        except ArtifactNotFound:
            return None
        state = meta.get(_STATE)
        return state if isinstance(state, dict) else {"state": "unknown"}

    def _dim(self, version: str) -> int:
        return self._shape(version)[0]

    def _shape(self, version: str) -> tuple[int, bool]:
        """The ready version's dim, and whether it has BM25 vectors (collections made before hybrid do not)."""
        with self._lock:
            shape = self._dims.get(version)
        if shape is None:
            state = self._state(self._name(version))
            if state is None or state.get("state") != "ready":
                raise ArtifactNotFound(f"index version {version}")
            shape = (int(state["dim"]), bool(state.get("sparse")))
            with self._lock:
                self._dims[version] = shape
        return shape

    # -- build ---------------------------------------------------------------------------------------------

    def build(
        self, version: str, dim: int, batches: Iterable[tuple[Sequence[Chunk], Vectors]], *, sparse: bool = True
    ) -> int:
        self.begin(version, dim, sparse=sparse)
        try:
            n = 0
            for chunks, vectors in batches:
                n += self.write_part(version, n, chunks, vectors)
            return self.seal(version, n)
        except BaseException:
            with contextlib.suppress(Exception):
                self.delete(version)
            raise

    def begin(self, version: str, dim: int, *, sparse: bool = True) -> None:
        name = self._name(version)
        if dim <= 0:
            raise InvalidInput(f"dim must be positive, got {dim}")
        state = self._state(name)
        if state is not None:
            if state.get("state") == "ready":
                raise ConflictError(f"index version {version} already exists")
            with _sdk(f"drop orphan {name}"):
                self._client.delete_collection(name)
        with _sdk(f"create {name}"):
            self._client.create_collection(
                name,
                # Float16, as in Edge shards: half the vector memory, and both adapters rank the same.
                vectors_config=models.VectorParams(
                    size=dim, distance=models.Distance.COSINE, datatype=models.Datatype.FLOAT16
                ),
                sparse_vectors_config=(
                    {SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)} if sparse else None
                ),
                shard_number=self._shards,
                replication_factor=self._replication,
                # Every replica acknowledges a write before it returns: seal's exact count, answered by any
                # replica, then sees every point, and a replica that is down fails the item, which retries.
                write_consistency_factor=self._replication,
                metadata={_STATE: {"state": "building", "dim": dim, "sparse": sparse}},
            )
        with self._lock:
            self._building[version] = (dim, sparse)
        try:
            with _sdk(f"index {EMBED_HASH} of {name}"):  # vectors() filters on it
                self._client.create_payload_index(name, EMBED_HASH, field_schema=models.PayloadSchemaType.KEYWORD)
        except BaseException:
            self.delete(version)
            raise

    def _unsealed(self, version: str) -> tuple[int, bool]:
        """The dim and sparse flag of a version begun and not sealed (begun here, or read from its metadata)."""
        with self._lock:
            shape = self._building.get(version)
        if shape is not None:
            return shape
        state = self._state(self._name(version))
        if state is None or "dim" not in state:
            raise ArtifactNotFound(f"index version {version} was not begun")
        if state.get("state") == "ready":
            raise ConflictError(f"index version {version} is sealed")
        return int(state["dim"]), bool(state.get("sparse"))

    def write_part(self, version: str, offset: int, chunks: Sequence[Chunk], vectors: Vectors) -> int:
        if offset < 0:
            raise InvalidInput(f"offset must not be negative, got {offset}")
        if not chunks:
            return 0
        name = self._name(version)
        dim, sparse = self._unsealed(version)
        rows = _rows(chunks, vectors, dim)
        for start in range(0, len(chunks), self._batch):
            part = chunks[start : start + self._batch]
            dense = rows[start : start + len(part)].tolist()
            point_vectors: Any = dense
            if sparse:
                terms = [document_sparse(c) for c in part]
                point_vectors = {
                    "": dense,
                    SPARSE: [models.SparseVector(indices=t.indices, values=t.values) for t in terms],
                }
            first = offset + start  # ids are positions in the version: the same part always lands on the same ids
            batch = models.Batch(
                ids=list(range(first, first + len(part))), vectors=point_vectors, payloads=[_payload(c) for c in part]
            )
            with _sdk(f"upsert {name}"):
                self._client.upsert(name, points=batch, wait=True)
        return len(chunks)

    def seal(self, version: str, points: int) -> int:
        name = self._name(version)
        dim, sparse = self._unsealed(version)
        with _sdk(f"count {name}"):
            n = int(self._client.count(name, exact=True).count)
        if n != points:
            raise IncompleteVersion(f"index version {version} holds {n} points, expected {points}")
        with _sdk(f"seal {name}"):
            self._client.update_collection(
                name, metadata={_STATE: {"state": "ready", "dim": dim, "points": n, "sparse": sparse}}
            )
        with self._lock:
            self._building.pop(version, None)
        return n

    # -- reads ---------------------------------------------------------------------------------------------

    def search(self, version: str, vector: Vectors, limit: int) -> list[Hit]:
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        dim = self._dim(version)
        if query.shape[0] != dim:
            raise InvalidInput(f"query has dim {query.shape[0]}, index {version} has {dim}")
        if limit <= 0:
            return []
        name = self._name(version)
        with _sdk(f"query {name}"):
            found = self._client.query_points(name, query=query.tolist(), limit=limit, with_payload=True)
        return [Hit(_chunk(p.payload), float(p.score)) for p in found.points]

    def has_sparse(self, version: str) -> bool:
        return self._shape(version)[1]

    def query(
        self, version: str, vector: Vectors, text: str, limit: int, mode: RetrievalMode, steer: Steer | None = None
    ) -> Found:
        if mode == "dense" and steer is None:
            return Found(self.search(version, vector, limit), "dense")
        dense = np.asarray(vector, dtype=np.float32).reshape(-1)
        dim, sparse = self._shape(version)
        if dense.shape[0] != dim:
            raise InvalidInput(f"query has dim {dense.shape[0]}, index {version} has {dim}")
        terms = query_sparse(text) if mode != "dense" else None
        reason = dense_fallback(mode, sparse, len(terms.indices) if terms is not None else 0)
        answered: RetrievalMode = "dense" if reason or terms is None else mode
        if limit <= 0:
            return Found([], answered, reason)
        if steer is not None and not self._native_feedback:
            return self._steered_here(version, dense, text, limit, mode, steer)
        try:
            return self._query(version, dense, terms, limit, mode, answered, reason, steer)
        except InvalidInput:
            if steer is None:
                raise
            # A server before Qdrant 1.17 has no relevance feedback query: score steering in our code instead.
            logger.warning("qdrant server refused the relevance feedback query; steering scored here from now on")
            self._native_feedback = False
            return self._steered_here(version, dense, text, limit, mode, steer)

    def _steered_here(
        self, version: str, dense: np.ndarray, text: str, limit: int, mode: RetrievalMode, steer: Steer
    ) -> Found:
        """steering.py's formula over the plain nearest FALLBACK_POOL chunks (dense); a hybrid version answers
        unsteered: its fusion runs in the engine, which cannot take a list scored here."""
        if mode != "dense":
            return self.query(version, dense, text, limit, mode)
        name = self._name(version)
        with _sdk(f"query {name}"):
            pool = self._client.query_points(
                name, query=dense.tolist(), limit=max(limit, FALLBACK_POOL), with_payload=True, with_vectors=True
            ).points
        if not pool:
            return Found([], "dense", steered=True)
        rows = np.stack([plain_vector(p.vector) for p in pool])
        rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        scores = steered_matrix_scores(rows, dense, steer)
        order = np.argsort(-scores, kind="stable")[:limit]
        return Found([Hit(_chunk(pool[i].payload), float(scores[i])) for i in order], "dense", steered=True)

    def _query(
        self,
        version: str,
        dense: np.ndarray,
        terms: Any,
        limit: int,
        mode: RetrievalMode,
        answered: RetrievalMode,
        reason: str,
        steer: Steer | None,
    ) -> Found:
        name = self._name(version)
        nearest: Any = _steered(dense, steer) if steer is not None else dense.tolist()
        with _sdk(f"query {name}"):
            if answered == "dense" or terms is None:
                found = self._client.query_points(name, query=nearest, limit=limit, with_payload=True)
            else:
                fusion: models.RrfQuery | models.FusionQuery = (
                    models.RrfQuery(rrf=models.Rrf(k=RRF_K))
                    if mode == "hybrid-rrf"
                    else models.FusionQuery(fusion=models.Fusion.DBSF)
                )
                found = self._client.query_points(
                    name,
                    prefetch=[
                        models.Prefetch(query=nearest, limit=limit),
                        models.Prefetch(
                            query=models.SparseVector(indices=terms.indices, values=terms.values),
                            using=SPARSE,
                            limit=limit,
                        ),
                    ],
                    query=fusion,
                    limit=limit,
                    with_payload=True,
                )
        hits = [Hit(_chunk(p.payload), float(p.score)) for p in found.points]
        return Found(hits, answered, reason, steered=steer is not None)

    def chunk_vectors(self, version: str, chunk_ids: Collection[str]) -> dict[str, Vectors]:
        return self._vectors_by(version, "chunk_id", chunk_ids)

    def warm(self, version: str) -> None:
        self._dim(version)  # the server holds the collection; only its readiness is checked

    def count(self, version: str) -> int:
        self._dim(version)  # ArtifactNotFound unless ready
        name = self._name(version)
        with _sdk(f"count {name}"):
            return int(self._client.count(name, exact=True).count)

    def chunks(self, version: str) -> Iterator[Chunk]:
        self._dim(version)  # eager: an unknown version raises here, not on next()
        return self._scroll(self._name(version))

    def _scroll(self, name: str) -> Iterator[Chunk]:
        offset: Any = None
        while True:
            with _sdk(f"scroll {name}"):
                records, offset = self._client.scroll(
                    name, limit=_SCROLL_PAGE, offset=offset, with_payload=True, with_vectors=False
                )
            for r in records:
                yield _chunk(r.payload)
            if offset is None:
                return

    def vectors(self, version: str, hashes: Collection[str]) -> dict[str, Vectors]:
        return self._vectors_by(version, EMBED_HASH, hashes)

    def _vectors_by(self, version: str, field: str, values: Collection[str]) -> dict[str, Vectors]:
        """The stored vector of each point whose payload `field` is one of `values`, keyed by that value."""
        self._dim(version)  # ArtifactNotFound unless ready
        name = self._name(version)
        wanted = sorted(set(values))
        found: dict[str, Vectors] = {}
        for start in range(0, len(wanted), _HASHES_PER_FILTER):
            match = models.Filter(
                must=[
                    models.FieldCondition(
                        key=field, match=models.MatchAny(any=wanted[start : start + _HASHES_PER_FILTER])
                    )
                ]
            )
            offset: Any = None
            while True:
                with _sdk(f"scroll {name}"):
                    records, offset = self._client.scroll(
                        name,
                        scroll_filter=match,
                        limit=_SCROLL_PAGE,
                        offset=offset,
                        with_payload=True,
                        with_vectors=True,
                    )
                for r in records:
                    key = (r.payload or {}).get(field)
                    if key is not None and r.vector is not None:
                        found[str(key)] = plain_vector(r.vector)
                if offset is None:
                    break
        return found

    def versions(self) -> list[str]:
        with _sdk("list collections"):
            names = [c.name for c in self._client.get_collections().collections]
        found = []
        for name in names:
            if name.startswith(self._prefix):
                state = self._state(name)
                if state is not None and state.get("state") == "ready":
                    found.append(name[len(self._prefix) :])
        return sorted(found)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def published(self) -> str | None:
        """The version the alias points to, or None."""
        target = self._alias_target()
        if target is None or not target.startswith(self._prefix):
            return None
        return target[len(self._prefix) :]

    def _alias_target(self) -> str | None:
        with _sdk("get aliases"):
            aliases = self._client.get_aliases().aliases
        return next((a.collection_name for a in aliases if a.alias_name == self._alias), None)

    def publish(self, version: str) -> None:
        name = self._name(version)
        self._dim(version)  # only a ready version goes live
        current = self._alias_target()
        if current == name:
            return
        ops: list[models.CreateAliasOperation | models.DeleteAliasOperation] = []
        if current is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self._alias)))
        ops.append(
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=name, alias_name=self._alias))
        )
        with _sdk(f"move alias {self._alias} to {name}"):
            self._client.update_collection_aliases(change_aliases_operations=ops)

    def delete(self, version: str) -> None:
        name = self._name(version)
        if self._alias_target() == name:
            raise ConflictError(f"index version {version} is live (alias {self._alias}); publish another first")
        with self._lock:
            self._dims.pop(version, None)
            self._building.pop(version, None)
        try:
            with _sdk(f"delete {name}"):
                self._client.delete_collection(name)
        except ArtifactNotFound:
            pass
