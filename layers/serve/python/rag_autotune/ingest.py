"""Ingest: documents → chunks → vectors (live encoder) → a new index version → one conditional manifest write.

The new version is built completely and made durable before the pointer moves; if anything fails (or
another writer moved the pointer first) the new version is deleted and live serving never saw it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .chunking import chunk_document, embed_text
from .corpus import load_documents
from .domain import Chunk, Document, IngestReport, VersionPair
from .errors import ConflictError, IngestError, NotReady
from .ports import ArtifactStore, Encoder, VectorIndex, Vectors
from .readers import ReadLimits
from .versions import (
    index_version,
    model_versions,
    next_generation,
    read_manifest,
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
) -> int:
    """Embed and write one index version; on any failure nothing of it remains."""
    if version in index.versions():
        raise ConflictError(f"index version {version} already exists")  # never delete a finished version
    try:
        n = index.build(version, encoder.dim, embed_batches(chunks, encoder, progress))
        write_stats(store, version, len({c.doc_id for c in chunks}), n)
        return n
    except BaseException:
        index.delete(version)
        store.delete_prefix(f"corpus/{version}/")
        raise


def ingest(
    path: Path | str,
    *,
    store: ArtifactStore,
    index: VectorIndex,
    load_encoder: Callable[[str], Encoder],
    replace: bool = False,
    strict: bool = False,
    limits: ReadLimits | None = None,
    loaded: tuple[list[Document], list[str]] | None = None,
    chunk_chars: int = 1200,
    chunk_overlap: int = 150,
    keep: int = 3,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
) -> IngestReport:
    """Ingest `path` (corpus.load_documents), or the documents already `loaded` from it (a crawl). Skipped
    files and records are in the report's errors; `strict` makes any of them abort the ingest instead."""
    docs, errors = loaded if loaded is not None else load_documents(Path(path), limits)
    if errors and strict:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise IngestError(f"--strict: nothing ingested, {len(errors)} input(s) skipped: {errors[0]}{more}")

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
    n = build_version(version, chunks, encoder, index, store, progress)
    documents = len({c.doc_id for c in chunks})
    try:
        swap(
            store,
            VersionPair(model, version),
            expected_etag=etag,
            reason=f"ingest {path if loaded is not None else Path(path).name}",
            documents=documents,
            chunks=n,
            keep=keep,
            clock=clock,
        )
    except BaseException:
        index.delete(version)
        store.delete_prefix(f"corpus/{version}/")
        raise
    index.publish(version)
    return IngestReport(version, model, documents, n, errors)
