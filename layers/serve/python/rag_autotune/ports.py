"""The six ports (and PartWriter, what a VectorIndex that many processes can fill at once adds). Logic
depends on these Protocols; adapters/ implement them; tests/contract checks each implementation against the
same assertions."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from .domain import Chunk, Execution, Found, Hit, RetrievalMode, Vote
from .steering import Steer

Vectors = npt.NDArray[np.float32]


class Encoder(Protocol):
    """Text → L2-normalised float32 vectors, shape (n, dim)."""

    @property
    def version(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Vectors: ...


class ArtifactStore(Protocol):
    """Object storage (S3): models, index snapshots, corpora, reports and the manifest."""

    def get_bytes(self, key: str) -> bytes:
        """Raises ArtifactNotFound."""
        ...

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """Body and ETag read together. Raises ArtifactNotFound."""
        ...

    def head_etag(self, key: str) -> str | None:
        """The ETag, or None when the object does not exist. Cheap: the serving hot-reload check."""
        ...

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Unconditional write; returns the new ETag."""
        ...

    def put_if(self, key: str, data: bytes, expected_etag: str | None) -> str:
        """Conditional write: If-Match expected_etag, or create-only (If-None-Match: *) when None.
        Raises ConflictError when the condition fails. Returns the new ETag."""
        ...

    def upload_file(self, key: str, path: Path) -> None: ...

    def download_file(self, key: str, path: Path) -> None:
        """Raises ArtifactNotFound."""
        ...

    def list_keys(self, prefix: str) -> list[str]: ...

    def delete_prefix(self, prefix: str) -> int:
        """Deletes every key under prefix; returns how many."""
        ...


class FeedbackStore(Protocol):
    """DynamoDB: the votes (what /ask showed travels in its signed query id, query_token.py)."""

    def record_vote(self, vote: Vote, dedupe_key: str, window_s: int) -> bool:
        """Stores the vote unless the same dedupe_key was recorded less than window_s ago.
        True when recorded, False for a duplicate. Atomic: the vote and its dedupe marker land together."""
        ...

    def votes(self, since: float | None = None, limit: int = 10_000) -> list[Vote]:
        """Votes with created_at > since (all when None), oldest first, at most limit."""
        ...


class VectorIndex(Protocol):
    """Qdrant: one collection (server) or one Edge shard (embedded) per index version.
    A version is immutable once built; searches name the version, so a response never mixes versions."""

    def build(
        self, version: str, dim: int, batches: Iterable[tuple[Sequence[Chunk], Vectors]], *, sparse: bool = True
    ) -> int:
        """Creates the version from scratch and makes it durable; returns the number of points.
        sparse: each chunk also gets a BM25 sparse vector of `chunking.embed_text(chunk)` (the engine's IDF
        modifier weighs its terms at query time). On failure nothing of the version remains."""
        ...

    def has_sparse(self, version: str) -> bool:
        """Whether the version holds BM25 vectors (versions built before hybrid retrieval do not).
        Raises ArtifactNotFound for an unknown version."""
        ...

    def search(self, version: str, vector: Vectors, limit: int) -> list[Hit]:
        """Nearest chunks by cosine, best first. Raises ArtifactNotFound for an unknown version."""
        ...

    def query(
        self, version: str, vector: Vectors, text: str, limit: int, mode: RetrievalMode, steer: Steer | None = None
    ) -> Found:
        """`search` when mode is dense; else one engine query: a dense and a BM25 (`text`) prefetch of `limit`
        each, fused (hybrid-rrf: reciprocal rank, hybrid-dbsf: distribution-based score fusion). Answers dense,
        saying why (retrieval.dense_fallback), when the version has no BM25 vectors or `text` no BM25 term.
        steer: the dense search (alone, or the dense prefetch) is the engine's relevance feedback query with
        these two items and coefficients instead of plain nearest (steering.py's formula); Found.steered."""
        ...

    def chunk_vectors(self, version: str, chunk_ids: Collection[str]) -> dict[str, Vectors]:
        """The stored vector of each of these chunks that the version holds (chunk ids it lacks are left out).
        Raises ArtifactNotFound for an unknown version."""
        ...

    def warm(self, version: str) -> None:
        """Makes the version ready to search now (download and open it), so the first query pays nothing.
        Raises ArtifactNotFound for an unknown version."""
        ...

    def count(self, version: str) -> int: ...

    def chunks(self, version: str) -> Iterator[Chunk]:
        """Every chunk of the version (for re-embedding and golden sets)."""
        ...

    def vectors(self, version: str, hashes: Collection[str]) -> dict[str, Vectors]:
        """The stored vector of every chunk of the version whose embed hash (chunking.embed_hash, written
        by build) is in hashes: an incremental ingest reuses them instead of embedding again. Raises
        ArtifactNotFound for an unknown version."""
        ...

    def versions(self) -> list[str]: ...

    def delete(self, version: str) -> None:
        """Idempotent."""
        ...

    def publish(self, version: str) -> None:
        """Points the serving alias at version (server: one atomic alias update; edge: nothing to do,
        the S3 manifest is the pointer)."""
        ...


@runtime_checkable
class PartWriter(Protocol):
    """A VectorIndex that many processes can write one version of at once (a Qdrant server or cluster): the
    tune's embed Map items write their points straight into the candidate version, and Assemble only seals it.
    An index without it (Qdrant Edge: one shard file, built by one process) gets vector parts that Assemble
    builds from. `part_writer` says which."""

    def begin(self, version: str, dim: int, *, sparse: bool = True) -> None:
        """Creates the version unsealed: not in versions(), not searchable, removed by delete(). An unsealed
        leftover of that name (a run that died) is dropped first. ConflictError when the version is sealed."""
        ...

    def write_part(self, version: str, offset: int, chunks: Sequence[Chunk], vectors: Vectors) -> int:
        """Writes these chunks as points offset, offset + 1, … (with BM25 vectors when begun with sparse) and
        returns how many. Writing a part again overwrites the same points: a retried item never duplicates.
        ArtifactNotFound when the version was not begun (or was deleted since); ConflictError once sealed."""
        ...

    def seal(self, version: str, points: int) -> int:
        """Makes the version complete and durable, marked last, when it holds exactly `points` points; returns
        them. Else raises IncompleteVersion and leaves it unsealed for delete(). ArtifactNotFound when it was
        not begun, ConflictError when already sealed."""
        ...


def part_writer(index: VectorIndex) -> PartWriter | None:
    """The index as a PartWriter when it is one, else None."""
    return index if isinstance(index, PartWriter) else None


class Reranker(Protocol):
    """A relevance model that re-orders the candidates of one question (Bedrock's Rerank API, or the identity
    when reranking is off)."""

    @property
    def model(self) -> str | None:
        """The model that orders, None for the identity."""
        ...

    def rerank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        """(index into documents, relevance) for every document, most relevant first: the indexes are a
        permutation of range(len(documents)) and the relevances do not increase. Raises RerankUnavailable
        (with its reason) when the model does not answer."""
        ...


class Workflows(Protocol):
    """One workflow (a Step Functions state machine): start an execution, see how it is doing."""

    def start(self, name: str, payload: Mapping[str, Any]) -> str:
        """Start an execution named `name` with `payload` as its input; its id. Raises ConflictError if an
        execution of that name exists, UpstreamError if the service cannot be reached."""
        ...

    def describe(self, execution: str) -> Execution:
        """The execution's status, with its output or its error. Raises ArtifactNotFound for an unknown id."""
        ...
