"""Incremental ingest: vectors reused by embed hash, the sync modes, and two overlapping ingests."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from rag_autotune.chunking import chunk_document
from rag_autotune.domain import Document
from rag_autotune.errors import IngestError
from rag_autotune.ingest import Change, PointerMoved, apply_change, ingest
from rag_autotune.ports import Vectors
from rag_autotune.versions import read_manifest
from tests.fakes import GatedStore, HashEncoder, MemoryArtifactStore, MemoryVectorIndex

CHUNK_CHARS = 200


class CountingEncoder(HashEncoder):
    def __init__(self, version: str = "v0") -> None:
        super().__init__(version)
        self.texts = 0

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.texts += len(texts)
        return super().encode(texts)


def doc(i: int, edit: str = "") -> Document:
    paragraphs = [
        f"Document {i} paragraph {p} talks about topic {i * 7 + p} at some length, on purpose." for p in range(6)
    ]
    return Document(f"doc{i}", f"Title {i}", "\n\n".join(paragraphs) + edit)


@pytest.fixture
def world() -> dict:  # type: ignore[type-arg]
    store, index = MemoryArtifactStore(), MemoryVectorIndex()
    store.put_bytes("models/v0/meta.json", b"{}")
    encoder = CountingEncoder()
    return {"store": store, "index": index, "encoder": encoder}


def run(world: dict, change: Change, **kw: object) -> object:  # type: ignore[type-arg]
    return apply_change(
        change,
        store=world["store"],
        index=world["index"],
        load_encoder=lambda v: world["encoder"],
        chunk_chars=CHUNK_CHARS,
        chunk_overlap=0,
        **kw,  # type: ignore[arg-type]
    )


def live_docs(world: dict) -> set[str]:  # type: ignore[type-arg]
    manifest = read_manifest(world["store"])
    assert manifest is not None
    return {c.doc_id for c in world["index"].chunks(manifest[0].live.index_version)}


def test_unchanged_corpus_embeds_nothing_and_builds_nothing(world: dict) -> None:  # type: ignore[type-arg]
    docs = [doc(i) for i in range(20)]
    first = run(world, Change(docs, replace=True))
    assert first.embedded == first.chunks > 20 and first.reused == 0  # type: ignore[attr-defined]
    world["encoder"].texts = 0
    before = read_manifest(world["store"])
    again = run(world, Change(docs, replace=True))
    assert (again.embedded, again.reused, again.changed) == (0, first.chunks, False)  # type: ignore[attr-defined]
    assert world["encoder"].texts == 0
    assert read_manifest(world["store"]) == before
    assert world["index"].versions() == [first.index_version]  # type: ignore[attr-defined]


def test_re_merging_documents_already_live_builds_nothing(world: dict) -> None:  # type: ignore[type-arg]
    """Merged again after other documents came in, a corpus's chunks would come last: still no change."""
    docs = [doc(i) for i in range(10)]
    run(world, Change(docs))
    second = run(world, Change([doc(i) for i in range(10, 13)]))
    again = run(world, Change(docs))
    assert (again.embedded, again.changed, again.index_version) == (0, False, second.index_version)  # type: ignore[attr-defined]


def test_editing_one_percent_of_documents_re_embeds_their_chunks_only(world: dict) -> None:  # type: ignore[type-arg]
    docs = [doc(i) for i in range(200)]
    first = run(world, Change(docs, replace=True))
    world["encoder"].texts = 0
    edited = [doc(3, " One new closing sentence."), doc(150, " Another new closing sentence.")]
    report = run(world, Change(edited))  # merge: the other 198 documents are kept
    assert report.changed and report.chunks == first.chunks  # type: ignore[attr-defined]
    # only the chunks whose text changed (each edit touches the last chunk of its document) are embedded
    assert report.embedded == 2 and report.reused == first.chunks - 2  # type: ignore[attr-defined]
    assert world["encoder"].texts == 2
    assert report.embedded / report.chunks <= 0.01  # type: ignore[attr-defined]
    # the reused and the new vectors are what a full re-embed would give
    version = report.index_version  # type: ignore[attr-defined]
    chunks, matrix = world["index"].data[version]
    fresh = HashEncoder("v0").encode([f"{c.title}\n{c.text}" for c in chunks])
    np.testing.assert_allclose(matrix, fresh, atol=1e-6)


def test_merge_replace_and_deletes(world: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    run(world, Change([doc(i) for i in range(5)]))
    assert live_docs(world) == {f"doc{i}" for i in range(5)}
    run(world, Change([doc(9)], deletes=["doc1", "doc2", "never-there"]))
    assert live_docs(world) == {"doc0", "doc3", "doc4", "doc9"}
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "doc4", "text": "only me"}\n')
    report = ingest(
        corpus,
        store=world["store"],
        index=world["index"],
        load_encoder=lambda v: world["encoder"],
        replace=True,
    )
    assert live_docs(world) == {"doc4"} and report.embedded == 1 and report.reused == 0
    with pytest.raises(IngestError, match="no document"):
        run(world, Change(deletes=["doc4"]))
    assert live_docs(world) == {"doc4"}


def overlapping(world: dict, retries: int) -> list[object]:  # type: ignore[type-arg]
    store = GatedStore(2)
    store.objects.update(world["store"].objects)
    world["store"] = store
    results: list[object] = [None, None]

    def one(slot: int) -> None:
        try:
            results[slot] = run(world, Change([doc(100 + slot)]), retries=retries)
        except Exception as exc:  # noqa: BLE001 (asserted by the caller)
            results[slot] = exc

    threads = [threading.Thread(target=one, args=(slot,)) for slot in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_overlapping_ingests_one_wins_the_other_gets_a_conflict(world: dict) -> None:  # type: ignore[type-arg]
    base = run(world, Change([doc(i) for i in range(3)]))
    results = overlapping(world, retries=0)
    lost = [r for r in results if isinstance(r, Exception)]
    won = [r for r in results if not isinstance(r, Exception)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], PointerMoved) and "run it again" in str(lost[0])
    manifest = read_manifest(world["store"])
    assert manifest is not None and manifest[0].live.index_version == won[0].index_version  # type: ignore[attr-defined]
    winner = 100 + results.index(won[0])
    assert live_docs(world) == {"doc0", "doc1", "doc2", f"doc{winner}"}
    # the loser's version is gone, with its claim: only the base and the winner's remain
    assert world["index"].versions() == sorted([base.index_version, won[0].index_version])  # type: ignore[attr-defined]
    assert sorted({k.split("/")[1] for k in world["store"].list_keys("corpus/")}) == world["index"].versions()


def test_overlapping_ingests_with_retries_lose_nothing(world: dict) -> None:  # type: ignore[type-arg]
    run(world, Change([doc(i) for i in range(3)]))
    world["encoder"].texts = 0
    results = overlapping(world, retries=2)
    assert not any(isinstance(r, Exception) for r in results), results
    assert live_docs(world) == {"doc0", "doc1", "doc2", "doc100", "doc101"}
    # the retry reused what its first attempt embedded: each new document's chunks were embedded once
    assert world["encoder"].texts == sum(len(chunk_document(doc(i), CHUNK_CHARS, 0)) for i in (100, 101))
