"""Ingest: documents → chunks → vectors (live encoder) → a new index version → one conditional manifest write.

The new version is built completely and made durable before the pointer moves; if anything fails (or
another writer moved the pointer first) the new version is deleted and live serving never saw it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .chunking import chunk_document, embed_text
from .corpus import load_documents
from .domain import Chunk, IndexStats, IngestReport, RetrievalMode, VersionPair
from .errors import ConflictError, IngestError, NotReady
from .observability import logger
from .ports import ArtifactStore, Encoder, VectorIndex, Vectors
from .retrieval import bm25_unusable
from .versions import (
    index_version,
    model_versions,
    next_generation,
    read_manifest,
    stored_mode,
    swap,
    write_stats,
)

Progress = Callable[[int, int], None]
BATCH = 64


def embed_batches(
    chunks: Sequence[Chunk], encoder: Encoder, progress: Progress | None = None, batch: int = BATCH
) -> Iterator[tuple[Sequence[Chunk], Vectors]]:
    for start in range(0, len(chunks), batch):
        part = chunks[start : start + batch]
        yield part, encoder.encode([embed_text(c) for c in part])
        if progress:
            progress(start + len(part), len(chunks))


def build_version(
    version: str,
    chunks: Sequence[Chunk],
    encoder: Encoder,
    index: VectorIndex,
    store: ArtifactStore,
    progress: Progress | None = None,
    mode: RetrievalMode = "dense",
) -> int:
    """Embed and write one index version, with BM25 vectors unless BM25 cannot tokenise the corpus (then the
    version is dense only, and its stats say why); on any failure nothing of it remains. `mode`: how /ask
    queries it until a tune run's smoke step chooses."""
    if version in index.versions():
        raise ConflictError(f"index version {version} already exists")  # never delete a finished version
    unusable = bm25_unusable(embed_text(c) for c in chunks) if chunks else ""
    if unusable:
        logger.warning("BM25 cannot rank this corpus: the index version is dense only", extra={"reason": unusable})
    try:
        n = index.build(version, encoder.dim, embed_batches(chunks, encoder, progress), sparse=not unusable)
        stats = IndexStats(len({c.doc_id for c in chunks}), n, "dense" if unusable else mode, unusable)
        write_stats(store, version, stats)
        return n
    except BaseException:
        index.delete(version)
        store.delete_prefix(f"corpus/{version}/")
        raise


def ingest(
    path: Path,
    *,
    store: ArtifactStore,
    index: VectorIndex,
    load_encoder: Callable[[str], Encoder],
    replace: bool = False,
    skip_invalid: bool = False,
    chunk_chars: int = 1200,
    chunk_overlap: int = 150,
    keep: int = 3,
    progress: Progress | None = None,
) -> IngestReport:
    docs, errors = load_documents(path)
    if errors and not skip_invalid:
        shown = "\n  ".join(errors[:20]) + (f"\n  … and {len(errors) - 20} more" if len(errors) > 20 else "")
        raise IngestError(f"{len(errors)} malformed record(s) in {path}, nothing ingested:\n  {shown}")

    current = read_manifest(store)
    if current:
        manifest, etag = current
        model = manifest.live.model_version
    else:
        manifest, etag = None, None
        models = model_versions(store)
        if not models:
            raise NotReady("no encoder uploaded yet: run `rag-autotune bootstrap` first")
        model = models[-1]

    new_ids = {d.doc_id for d in docs}
    kept: list[Chunk] = []
    if manifest and not replace:
        kept = [c for c in index.chunks(manifest.live.index_version) if c.doc_id not in new_ids]
    chunks = kept + [c for d in docs for c in chunk_document(d, chunk_chars, chunk_overlap)]

    known = index.versions() + ([manifest.live.index_version] if manifest else [])
    version = index_version(model, next_generation(known))
    encoder = load_encoder(model)
    # A new corpus generation keeps the mode the smoke step chose for the live version.
    mode = stored_mode(store, manifest.live.index_version)[0] if manifest else "dense"
    n = build_version(version, chunks, encoder, index, store, progress, mode)
    documents = len({c.doc_id for c in chunks})
    try:
        swap(
            store,
            VersionPair(model, version),
            expected_etag=etag,
            reason=f"ingest {Path(path).name}",
            documents=documents,
            chunks=n,
            keep=keep,
        )
    except BaseException:
        index.delete(version)
        store.delete_prefix(f"corpus/{version}/")
        raise
    index.publish(version)
    return IngestReport(version, model, documents, n, errors)
