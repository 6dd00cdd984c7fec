"""The auto-ingest logic on fakes: SQS records of S3 EventBridge events → one ingest from the objects' current
state → a partial batch response; and two batches that overlap."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from rag_autotune.autoingest import batch_keys, change_from_objects, documents_from_object, handle_batch
from rag_autotune.readers import ReadLimits
from rag_autotune.versions import read_manifest
from tests.fakes import GatedStore, HashEncoder, MemoryArtifactStore, MemoryVectorIndex

BUCKET = "docs-bucket"


def record(key: str, message_id: str, *, bucket: str = BUCKET, detail_type: str = "Object Created") -> dict[str, Any]:
    body = {
        "source": "aws.s3",
        "detail-type": detail_type,
        "detail": {"bucket": {"name": bucket}, "object": {"key": key}},
    }
    return {"messageId": message_id, "receiptHandle": f"rh-{message_id}", "body": json.dumps(body)}


def test_batch_keys_dedupes_and_ignores_what_is_not_a_docs_event() -> None:
    records = [
        record("docs/a.md", "1"),
        record("docs/a.md", "2"),  # the same object twice in one batch: read once
        record("docs/b.md", "3", detail_type="Object Deleted"),
        record("models/v0/meta.json", "4"),
        record("docs/c.md", "5", bucket="another-bucket"),
        {"messageId": "6", "body": "not json"},
    ]
    batch = batch_keys(records, BUCKET, "docs/")
    assert batch.keys == ["docs/a.md", "docs/b.md"]
    assert batch.ignored == ["4", "5", "6"]


def test_documents_from_object_reads_with_the_readers_and_names_what_it_skips() -> None:
    limits = ReadLimits()
    docs, errors = documents_from_object("guide/install.md", b"# Install\n\nRun it.", limits)
    assert [(d.doc_id, d.title) for d in docs] == [("guide/install.md", "Install")] and errors == []
    for name, data in [("x.md", b"\xff\xfe\x00"), ("x.md", b"  \n"), ("x.png", b"png")]:
        docs, errors = documents_from_object(name, data, limits)
        assert docs == [] and len(errors) == 1 and errors[0].startswith(f"{name}: ")
    assert "unsupported file type" in documents_from_object("x.png", b"png", limits)[1][0]
    docs, errors = documents_from_object("many.jsonl", b'{"id": "a", "text": "A"}\n{broken\n', limits)
    assert [d.doc_id for d in docs] == ["a"] and len(errors) == 1 and "line 2" in errors[0]
    html = (
        b"<html><head><title>Page</title></head><body><main><p>"
        + b"Real text here. " * 20
        + b"</p></main></body></html>"
    )
    docs, errors = documents_from_object("site/page.html", html, limits)
    assert [d.title for d in docs] == ["Page"] and "Real text here." in docs[0].text and errors == []


def test_change_reads_the_objects_as_they_are_now() -> None:
    store = MemoryArtifactStore()
    store.put_bytes("docs/a b.md", b"# A\n\ntext")  # the event spells it URL-encoded
    store.put_bytes("docs/x.png", b"\x89PNG")
    change = change_from_objects(store, ["docs/a+b.md", "docs/gone.md", "docs/x.png"], "docs/")
    assert [d.doc_id for d in change.documents] == ["a b.md"]
    assert list(change.deletes) == ["gone.md"]
    assert len(change.errors) == 1 and "x.png" in change.errors[0]


def world() -> dict[str, Any]:
    store = MemoryArtifactStore()
    store.put_bytes("models/v0/meta.json", b"{}")
    return {"store": store, "index": MemoryVectorIndex()}


def handle(w: dict[str, Any], records: list[dict[str, Any]], retries: int = 2) -> dict[str, Any]:
    return handle_batch(
        records,
        store=w["store"],
        index=w["index"],
        load_encoder=HashEncoder,
        bucket=BUCKET,
        prefix="docs/",
        retries=retries,
    )


def live_docs(w: dict[str, Any]) -> set[str]:
    manifest = read_manifest(w["store"])
    assert manifest is not None
    return {c.doc_id for c in w["index"].chunks(manifest[0].live.index_version)}


def test_one_batch_is_one_version_and_a_delete_drops_the_document() -> None:
    w = world()
    for i in range(30):
        w["store"].put_bytes(f"docs/p{i}.md", f"# Page {i}\n\nAbout {i}.".encode())
    assert handle(w, [record(f"docs/p{i}.md", str(i)) for i in range(30)]) == {"batchItemFailures": []}
    assert len(w["index"].versions()) == 1 and live_docs(w) == {f"p{i}.md" for i in range(30)}
    w["store"].delete_prefix("docs/p3.md")
    assert handle(w, [record("docs/p3.md", "d", detail_type="Object Deleted")]) == {"batchItemFailures": []}
    assert len(w["index"].versions()) == 2 and "p3.md" not in live_docs(w)
    # an event delivered twice changes nothing: no new version
    assert handle(w, [record("docs/p3.md", "d", detail_type="Object Deleted")]) == {"batchItemFailures": []}
    assert len(w["index"].versions()) == 2


def overlapping_batches(retries: int) -> tuple[dict[str, Any], list[Any]]:
    w = world()
    w["store"].put_bytes("docs/base.md", b"# Base\n\nfirst")
    handle(w, [record("docs/base.md", "0")])
    w["store"].put_bytes("docs/one.md", b"# One\n\nfrom the first batch")
    w["store"].put_bytes("docs/two.md", b"# Two\n\nfrom the second batch")
    store = GatedStore(2)  # both batches read the same manifest before either writes it
    store.objects.update(w["store"].objects)
    w["store"] = store
    results: list[Any] = [None, None]

    def one(slot: int, key: str) -> None:
        try:
            results[slot] = handle(w, [record(key, f"m{slot}")], retries=retries)
        except Exception as exc:  # noqa: BLE001 (asserted by the caller)
            results[slot] = exc

    threads = [
        threading.Thread(target=one, args=(0, "docs/one.md")),
        threading.Thread(target=one, args=(1, "docs/two.md")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return w, results


def test_overlapping_batches_one_wins_the_other_re_reads_and_applies_again() -> None:
    w, results = overlapping_batches(retries=2)
    assert results == [{"batchItemFailures": []}, {"batchItemFailures": []}]
    assert live_docs(w) == {"base.md", "one.md", "two.md"}


def test_a_batch_that_keeps_losing_is_reported_failed_for_redelivery() -> None:
    w, results = overlapping_batches(retries=0)
    (won,) = [slot for slot in (0, 1) if results[slot] == {"batchItemFailures": []}]
    failed = f"m{1 - won}"
    assert results[1 - won] == {"batchItemFailures": [{"itemIdentifier": failed}]}
    lost = {"m0": "one.md", "m1": "two.md"}[failed]
    assert lost not in live_docs(w) and "base.md" in live_docs(w)
    # SQS delivers the failed message again: now it applies, and nothing was lost
    assert handle(w, [record(f"docs/{lost}", failed)]) == {"batchItemFailures": []}
    assert live_docs(w) == {"base.md", "one.md", "two.md"}


@pytest.mark.parametrize("records", [[], [{"messageId": "x", "body": "{}"}]])
def test_nothing_to_do_is_success(records: list[dict[str, Any]]) -> None:
    w = world()
    assert handle(w, records) == {"batchItemFailures": []}
    assert w["index"].versions() == []
