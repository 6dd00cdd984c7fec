"""Drop-in auto-ingest: objects put under s3://<bucket>/docs/ (or deleted) reach the ingest function as SQS
batches of S3 EventBridge events; one batch becomes one incremental ingest, one conditional manifest write.

A batch is applied from the objects' state now, not from the events: every key the batch names is read again,
so a key that exists is (re-)ingested with its current text and a key that is gone is deleted. Events that
arrive late, twice or out of order therefore change nothing, and a batch can be retried as a whole.

The document id of docs/<path> is <path> (as for a folder given to `rag-autotune ingest`); a .jsonl object
holds one document per line, under the ids its lines give (deleting that object drops nothing: its ids are
not known any more)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from .domain import Document
from .errors import ArtifactNotFound
from .ingest import Change, FanOut, PointerMoved, apply_change
from .ingest_fanout import FanoutPending
from .ports import ArtifactStore, Encoder, VectorIndex
from .readers import ReadLimits, read_file


def documents_from_object(doc_id: str, data: bytes, limits: ReadLimits) -> tuple[list[Document], list[str]]:
    """One stored object as documents (the readers: HTML, PDF, Markdown by headings, text, JSONL), and
    "<name>: <reason>" per part skipped."""
    result = read_file(doc_id, data, limits)
    return result.documents, [str(skip) for skip in result.skipped]


@dataclass
class Batch:
    """The keys an SQS batch names, and the messages that named none (not an S3 docs/ event)."""

    keys: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # message ids
    message_ids: list[str] = field(default_factory=list)


def batch_keys(records: Iterable[Mapping[str, Any]], bucket: str, prefix: str) -> Batch:
    """S3 object keys under prefix from SQS records whose bodies are S3 EventBridge events."""
    batch = Batch()
    seen: set[str] = set()
    for record in records:
        message_id = str(record.get("messageId", ""))
        batch.message_ids.append(message_id)
        try:
            event = json.loads(record.get("body") or "")
            detail = event["detail"]
            key, name = str(detail["object"]["key"]), str(detail["bucket"]["name"])
        except (ValueError, KeyError, TypeError):
            batch.ignored.append(message_id)
            continue
        if event.get("source") != "aws.s3" or name != bucket or not key.startswith(prefix):
            batch.ignored.append(message_id)
            continue
        if key not in seen:
            seen.add(key)
            batch.keys.append(key)
    return batch


def change_from_objects(
    store: ArtifactStore, keys: Sequence[str], prefix: str, limits: ReadLimits | None = None
) -> Change:
    """Read each key now: present → its documents, gone → its document id deleted."""
    documents: dict[str, Document] = {}
    deletes: list[str] = []
    errors: list[str] = []
    for key in keys:
        found = None
        # The event's key may be URL-encoded ("a+b.md" for "a b.md"): whichever spelling exists is the object.
        candidates = list(dict.fromkeys([key, unquote_plus(key)]))
        for candidate in candidates:
            try:
                found = candidate, store.get_bytes(candidate)
                break
            except ArtifactNotFound:
                continue
        if found is None:
            deletes += [c[len(prefix) :] for c in candidates if c.startswith(prefix)]
            continue
        docs, skipped = documents_from_object(found[0][len(prefix) :], found[1], limits or ReadLimits())
        errors += skipped
        documents.update((d.doc_id, d) for d in docs)
    source = f"auto-ingest of {len(keys)} object(s) under {prefix}"
    return Change(list(documents.values()), deletes=deletes, source=source, errors=errors)


def handle_batch(
    records: Sequence[Mapping[str, Any]],
    *,
    store: ArtifactStore,
    index: VectorIndex,
    load_encoder: Callable[[str], Encoder],
    bucket: str,
    prefix: str,
    retries: int,
    chunk_chars: int = 1200,
    chunk_overlap: int = 150,
    keep: int = 3,
    limits: ReadLimits | None = None,
    log: Callable[[str], None] = lambda _: None,
    fan_out: FanOut | None = None,
) -> dict[str, list[dict[str, str]]]:
    """An SQS batch → one ingest → an SQS partial batch response. If the pointer kept moving through every
    retry, each message that named a key is reported failed, so SQS delivers it again (nothing is lost);
    any other error fails the whole batch the same way (raised).

    A batch with more to embed than `fan_out.above` fans out (ingest_fanout.py) and this waits for it. If it
    is still running when the wait ends, the batch is reported failed too: SQS delivers it again, and as a
    batch is applied from the objects' state then, the later delivery finds the work done (nothing changed)
    or, if it still runs, loses or wins the pointer write like any overlapping ingest."""
    batch = batch_keys(records, bucket, prefix)
    if batch.ignored:
        log(f"ignored {len(batch.ignored)} message(s) that are not S3 events under {prefix}")
    if not batch.keys:
        return {"batchItemFailures": []}
    try:
        report = apply_change(
            change_from_objects(store, batch.keys, prefix, limits),
            store=store,
            index=index,
            load_encoder=load_encoder,
            retries=retries,
            chunk_chars=chunk_chars,
            chunk_overlap=chunk_overlap,
            keep=keep,
            fan_out=fan_out,
        )
    except (PointerMoved, FanoutPending) as exc:
        log(f"not applied, the batch is delivered again: {exc}")
        ignored = set(batch.ignored)
        return {"batchItemFailures": [{"itemIdentifier": m} for m in batch.message_ids if m not in ignored]}
    for err in report.errors:
        log(f"skipped: {err}")
    log(
        f"{len(batch.keys)} object(s): index {report.index_version}, {report.documents} documents, "
        f"embedded {report.embedded} chunks, reused {report.reused}"
    )
    return {"batchItemFailures": []}
