"""What both Qdrant adapters share: version-name rules, batch shape checks, the chunk payload and the BM25
embedder. Both adapters take their sparse vectors from Edge's own BM25 (`qdrant_edge.Bm25`, whose config
mirrors the server's `Bm25Config`) and send them as plain sparse vectors: an Edge shard and a server collection
built from the same chunks hold the same vectors, and qdrant-client's local mode, which has no server-side
inference, tests the server adapter's real code path."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from qdrant_edge import Bm25, SparseVector

from ..chunking import embed_hash, embed_text
from ..domain import Chunk
from ..errors import InvalidInput
from ..ports import Vectors

SPARSE = "bm25"  # the name of the sparse vector in every version that has one
RRF_K = 60  # reciprocal rank fusion's constant: the usual value, so that one list's top rank does not decide alone

_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_version(version: str) -> str:
    """Version names become S3 keys, directory names and collection names: no slashes, no dots first."""
    if not _VERSION_RE.match(version):
        raise InvalidInput(f"bad index version name: {version!r}")
    return version


def batch_rows(chunks: Sequence[Chunk], vectors: Vectors, dim: int) -> np.ndarray:
    """The batch's vectors as a (len(chunks), dim) float32 array; InvalidInput when they do not match."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1 and len(chunks) == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape != (len(chunks), dim):
        raise InvalidInput(f"batch of {len(chunks)} chunks with vectors of shape {arr.shape}, want dim {dim}")
    return arr


EMBED_HASH = "embed_sha"  # the payload field that lets an incremental ingest find a chunk's vector again


def chunk_payload(c: Chunk) -> dict[str, Any]:
    """The four fields every version has and the hash of the embedded text, then link, page and section only
    when set: versions built before those existed load with their defaults."""
    p: dict[str, Any] = {"chunk_id": c.chunk_id, "doc_id": c.doc_id, "title": c.title, "text": c.text}
    p[EMBED_HASH] = embed_hash(c)
    optional = {"url": c.url, "page": c.page, "section": c.section}
    return p | {k: v for k, v in optional.items() if v}


def payload_chunk(p: dict[str, Any] | None) -> Chunk:
    p = p or {}
    return Chunk(
        str(p.get("chunk_id", "")),
        str(p.get("doc_id", "")),
        str(p.get("title", "")),
        str(p.get("text", "")),
        url=str(p.get("url", "")),
        page=int(p.get("page", 0)),
        section=str(p.get("section", "")),
    )


def plain_vector(vector: Any) -> Vectors:
    """A stored point's vector as float32: the unnamed vector (a list, or the "" entry of a mapping)."""
    if isinstance(vector, dict):
        vector = vector.get("", next(iter(vector.values()), []))
    return np.asarray(vector, dtype=np.float32)


@functools.cache
def _bm25() -> Bm25:
    """English tokenizer, stop words and stemmer; k, b and the expected length are the engine's defaults."""
    return Bm25()


def document_sparse(c: Chunk) -> SparseVector:
    """The chunk's BM25 term weights, of the text the dense encoder embeds (title and text)."""
    return _bm25().embed_document(embed_text(c))


def query_sparse(text: str) -> SparseVector:
    """The query's BM25 terms (weight 1 each); no indices when it has only stop words or punctuation."""
    return _bm25().embed_query(text)
