"""Ingest: a change to the corpus → chunks → vectors → a new index version → one conditional manifest write.

Incremental. The live index version was embedded by the live model (the manifest names them as one pair), and
build() stores each chunk's embed hash (chunking.embed_hash: exactly what the encoder saw). So a chunk whose
hash is found in the live version takes its vector from there; only new or edited text is embedded. An
ingest that changes no chunk builds nothing and leaves the pointer where it is.

What a change means (`Change`): by default it merges (the documents given are added or replace their
namesakes, every other live document is kept); `replace=True` says the documents given are the whole corpus;
`deletes` drops documents by id (the S3 docs/ path uses it for deleted objects).

Large changes fan out (`FanOut`, ingest_fanout.py): an ingest with more chunks to embed than one embed shard
hands them to the ingest state machine, whose map items embed them (the tune's embed Map) and whose Assemble
calls `commit` as this module does; smaller ones embed here.

Nothing half-written: the new version is built completely and made durable before the pointer moves; if
anything fails (or another writer moved the pointer first) the new version is deleted. Two ingests never
build into the same version name: each claims its name with a create-only write. When two overlap, one
pointer write wins; the other raises PointerMoved, or with `retries` re-reads the manifest and applies its
change again on top of the winner's version (keeping what it already embedded)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .chunking import chunk_document, embed_hash, embed_text
from .corpus import load_documents
from .domain import FIRST_MODE, Chunk, Document, IndexStats, IngestReport, RetrievalMode, VersionPair
from .errors import ConflictError, IngestError, NotReady
from .observability import logger
from .ports import ArtifactStore, Encoder, VectorIndex, Vectors
from .readers import ReadLimits
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
CLAIMS = "corpus/"  # corpus/<version>/claim: the create-only write that reserves a version name


class PointerMoved(ConflictError):
    """Another ingest (or a tune) moved the live pointer while this ingest ran; nothing of it was kept."""


@dataclass(frozen=True)
class Change:
    """What one ingest applies to the live corpus."""

    documents: Sequence[Document] = ()
    deletes: Collection[str] = ()  # doc ids to drop; a document given as well is kept (the given text wins)
    replace: bool = False  # the documents given are the whole corpus: every other document is dropped
    source: str = "ingest"  # the manifest's reason
    errors: Sequence[str] = field(default_factory=list)  # what was skipped on the way, for the report


def embed_batches(
    chunks: Sequence[Chunk], encoder: Encoder, progress: Progress | None = None, batch: int = BATCH
) -> Iterator[tuple[Sequence[Chunk], Vectors]]:
    for start in range(0, len(chunks), batch):
        part = chunks[start : start + batch]
        yield part, encoder.encode([embed_text(c) for c in part])
        if progress:
            progress(start + len(part), len(chunks))


def discard(version: str, index: VectorIndex, store: ArtifactStore) -> None:
    index.delete(version)
    store.delete_prefix(f"corpus/{version}/")


def write_version(
    version: str,
    dim: int,
    batches: Iterable[tuple[Sequence[Chunk], Vectors]],
    chunks: Sequence[Chunk],
    index: VectorIndex,
    store: ArtifactStore,
    mode: RetrievalMode = "dense",
) -> int:
    """Write one index version from (chunks, vectors) batches, with BM25 vectors unless BM25 cannot tokenise
    the corpus (then the version is dense only, and its stats say why); on any failure nothing of it remains.
    `mode`: how /ask queries it until a tune run's smoke step chooses."""
    if version in index.versions():
        raise ConflictError(f"index version {version} already exists")  # never delete a finished version
    unusable = bm25_unusable(embed_text(c) for c in chunks) if chunks else ""
    if unusable:
        logger.warning("BM25 cannot rank this corpus: the index version is dense only", extra={"reason": unusable})
    try:
        n = index.build(version, dim, batches, sparse=not unusable)
        stats = IndexStats(len({c.doc_id for c in chunks}), n, "dense" if unusable else mode, unusable)
        write_stats(store, version, stats)
        return n
    except BaseException:
        discard(version, index, store)
        raise


def build_version(
    version: str,
    chunks: Sequence[Chunk],
    encoder: Encoder,
    index: VectorIndex,
    store: ArtifactStore,
    progress: Progress | None = None,
    mode: RetrievalMode = "dense",
) -> int:
    """Embed every chunk with `encoder` (a new model: nothing to reuse) into one index version."""
    return write_version(version, encoder.dim, embed_batches(chunks, encoder, progress), chunks, index, store, mode)


def merged_chunks(live: Iterable[Chunk], change: Change, chunk_chars: int, chunk_overlap: int) -> list[Chunk]:
    """The new version's chunks: the live ones the change keeps, then the chunks of the documents given."""
    given = {d.doc_id for d in change.documents}
    dropped = given | set(change.deletes)
    kept = [] if change.replace else [c for c in live if c.doc_id not in dropped]
    return kept + [c for d in change.documents for c in chunk_document(d, chunk_chars, chunk_overlap)]


def embed_new(
    chunks: Sequence[Chunk],
    known: Mapping[str, Vectors],
    encoder: Encoder,
    progress: Progress | None = None,
    batch: int = BATCH,
) -> dict[str, Vectors]:
    """Vectors of the chunks whose embed hash is not in `known`, each distinct text embedded once, by hash.
    A pure function of a list of chunks: the step a fan-out would shard."""
    todo = to_embed(chunks, known)
    hashes = [embed_hash(c) for c in todo]
    out: dict[str, Vectors] = {}
    if progress:
        progress(0, len(hashes))
    for part, rows in embed_batches(todo, encoder, progress, batch):
        done = len(out)
        out.update(zip(hashes[done : done + len(part)], np.asarray(rows, dtype=np.float32), strict=True))
    return out


def vector_batches(
    chunks: Sequence[Chunk], vectors: Mapping[str, Vectors], batch: int = 1024
) -> Iterator[tuple[Sequence[Chunk], Vectors]]:
    for start in range(0, len(chunks), batch):
        part = chunks[start : start + batch]
        yield part, np.stack([vectors[embed_hash(c)] for c in part]).astype(np.float32)


def claim_version(store: ArtifactStore, index: VectorIndex, model: str, live: str | None) -> str:
    """A fresh index version name for `model`, reserved by a create-only write: two ingests never share one."""
    claimed = {k[len(CLAIMS) :].split("/", 1)[0] for k in store.list_keys(CLAIMS)}
    generation = next_generation([*index.versions(), *claimed, *([live] if live else [])])
    while True:
        version = index_version(model, generation)
        try:
            store.put_if(f"{CLAIMS}{version}/claim", b"", None)
            return version
        except ConflictError:
            generation += 1


def apply_change(
    change: Change,
    *,
    store: ArtifactStore,
    index: VectorIndex,
    load_encoder: Callable[[str], Encoder],
    chunk_chars: int = 1200,
    chunk_overlap: int = 150,
    keep: int = 3,
    retries: int = 0,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
    fan_out: FanOut | None = None,
) -> IngestReport:
    """Apply `change` to the live corpus. On PointerMoved, up to `retries` more attempts on the new live pair."""
    embedded: dict[tuple[str, str], Vectors] = {}  # (model, hash) → vector: kept across attempts
    for attempt in range(retries + 1):
        try:
            return _attempt(
                change, store, index, load_encoder, chunk_chars, chunk_overlap, keep, embedded, progress, clock, fan_out
            )
        except PointerMoved:
            if attempt == retries:
                raise
    raise AssertionError("unreachable")


def _chunk_key(c: Chunk) -> str:
    return c.chunk_id


def _attempt(
    change: Change,
    store: ArtifactStore,
    index: VectorIndex,
    load_encoder: Callable[[str], Encoder],
    chunk_chars: int,
    chunk_overlap: int,
    keep: int,
    embedded: dict[tuple[str, str], Vectors],
    progress: Progress | None,
    clock: Callable[[], float],
    fan_out: FanOut | None,
) -> IngestReport:
    current = read_manifest(store)
    if current:
        manifest, etag = current
        model, live = manifest.live.model_version, manifest.live.index_version
        live_chunks = list(index.chunks(live))
    else:
        models = model_versions(store)
        if not models:
            raise NotReady("no encoder uploaded yet: run `rag-autotune bootstrap` first")
        model, live, etag, live_chunks = models[-1], None, None, []

    chunks = merged_chunks(live_chunks, change, chunk_chars, chunk_overlap)
    documents = len({c.doc_id for c in chunks})
    # The same chunks in another order are the same corpus (a merge puts the documents given last).
    if live is not None and sorted(chunks, key=_chunk_key) == sorted(live_chunks, key=_chunk_key):
        return IngestReport(
            live, model, documents, len(chunks), list(change.errors), embedded=0, reused=len(chunks), changed=False
        )
    if not chunks:
        raise IngestError("this change leaves no document in the corpus: nothing ingested")

    hashes = {embed_hash(c) for c in chunks}
    found = index.vectors(live, hashes) if live else {}
    vectors: dict[str, Vectors] = {**found, **{h: v for (m, h), v in embedded.items() if m == model}}
    reused = sum(1 for c in chunks if embed_hash(c) in found)
    # A new corpus generation keeps the mode the smoke step chose for the live version.
    mode = stored_mode(store, live)[0] if live else FIRST_MODE
    # A fan-out's Assemble has the parts and the live version, not this process's vectors of earlier attempts.
    todo = to_embed(chunks, found)
    if fan_out is not None and len(todo) > fan_out.above:
        version = claim_version(store, index, model, live)
        target = Target(model, live, etag, version, mode, change.source, documents, keep)
        n = fan_out.run(chunks, todo, target)
        return IngestReport(version, model, documents, n, list(change.errors), embedded=n - reused, reused=reused)

    encoder = load_encoder(model)
    new = embed_new(chunks, vectors, encoder, progress)
    embedded.update({(model, h): v for h, v in new.items()})
    vectors.update(new)

    version = claim_version(store, index, model, live)
    target = Target(model, live, etag, version, mode, change.source, documents, keep)
    n = commit(target, encoder.dim, vector_batches(chunks, vectors), chunks, store=store, index=index, clock=clock)
    return IngestReport(version, model, documents, n, list(change.errors), embedded=n - reused, reused=reused)


@dataclass(frozen=True)
class Target:
    """Where an ingest's new version goes: built as `version` for `model`, then swapped in if the manifest's
    ETag is still `etag` (the live pair it was computed from: `live`)."""

    model: str
    live: str | None
    etag: str | None
    version: str
    mode: RetrievalMode
    source: str  # the manifest's reason
    documents: int
    keep: int


class FanOut(Protocol):
    """Embeds the chunks an ingest must embed elsewhere (ingest_fanout.py: a Step Functions execution) and
    commits the version; used when they are more than `above`."""

    above: int

    def run(self, chunks: Sequence[Chunk], todo: Sequence[Chunk], target: Target) -> int: ...


def to_embed(chunks: Sequence[Chunk], known: Mapping[str, Vectors]) -> list[Chunk]:
    """One chunk per distinct embed hash not in `known`: what this ingest must embed."""
    todo: dict[str, Chunk] = {}
    for c in chunks:
        h = embed_hash(c)
        if h not in known and h not in todo:
            todo[h] = c
    return list(todo.values())


def commit(
    target: Target,
    dim: int,
    batches: Iterable[tuple[Sequence[Chunk], Vectors]],
    chunks: Sequence[Chunk],
    *,
    store: ArtifactStore,
    index: VectorIndex,
    clock: Callable[[], float],
) -> int:
    """Build the target version, then the one conditional manifest write; nothing of it is kept if either
    fails. A moved pointer raises PointerMoved. Returns the version's chunk count."""
    n = write_version(target.version, dim, batches, chunks, index, store, target.mode)
    try:
        swap(
            store,
            VersionPair(target.model, target.version),
            expected_etag=target.etag,
            reason=target.source,
            documents=target.documents,
            chunks=n,
            keep=target.keep,
            clock=clock,
        )
    except ConflictError as exc:
        discard(target.version, index, store)
        now = read_manifest(store)
        raise PointerMoved(
            f"the live index moved while this ingest ran (from {target.live or 'nothing'} to "
            f"{now[0].live.index_version if now else 'nothing'}): nothing of it was kept; run it again"
        ) from exc
    except BaseException:
        discard(target.version, index, store)
        raise
    index.publish(target.version)
    return n


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
    fan_out: FanOut | None = None,
) -> IngestReport:
    """Ingest `path` (corpus.load_documents), or the documents already `loaded` from it (a crawl). Skipped
    files and records are in the report's errors; `strict` makes any of them abort the ingest instead."""
    docs, errors = loaded if loaded is not None else load_documents(Path(path), limits)
    if errors and strict:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise IngestError(f"--strict: nothing ingested, {len(errors)} input(s) skipped: {errors[0]}{more}")

    source = f"ingest {path if loaded is not None else Path(path).name}"
    return apply_change(
        Change(docs, replace=replace, source=source, errors=errors),
        store=store,
        index=index,
        load_encoder=load_encoder,
        chunk_chars=chunk_chars,
        chunk_overlap=chunk_overlap,
        keep=keep,
        progress=progress,
        clock=clock,
        fan_out=fan_out,
    )
