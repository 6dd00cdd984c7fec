"""Issue 13.3, a large ingest fanned out through the embed Map (ingest_fanout.py), on fakes: the workflow is
InlineWorkflows, which runs every map item through the tune's own embed entry point, then AssembleIngest, or
Cleanup after a failure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rag_autotune.autoingest import handle_batch
from rag_autotune.chunking import embed_hash, embed_text
from rag_autotune.domain import Document, IngestReport
from rag_autotune.errors import IngestError
from rag_autotune.ingest import Change, PointerMoved, apply_change
from rag_autotune.ingest_fanout import FanoutPending, FanoutRunner
from rag_autotune.versions import read_manifest, swap
from tests.fakes import HashEncoder, InlineWorkflows, MemoryArtifactStore, MemoryVectorIndex
from tests.unit.test_autoingest import BUCKET, record

CHUNK_CHARS = 200


def doc(i: int, edit: str = "") -> Document:
    text = "\n\n".join(f"Document {i} paragraph {p} is about topic {i * 7 + p}, at some length." for p in range(4))
    return Document(f"doc{i}", f"Title {i}", text + edit)


class World:
    def __init__(self, fail_item: int | None = None) -> None:
        self.store, self.index = MemoryArtifactStore(), MemoryVectorIndex()
        self.store.put_bytes("models/v0/meta.json", b"{}")
        self.encoded = 0
        self.workflows = InlineWorkflows(self.store, self.index, self.load, fail_item=fail_item)
        self.ids = iter(f"job{n}" for n in range(100))
        self.runner = FanoutRunner(
            self.workflows, self.store, size=3, above=3, sleep=lambda _s: None, new_id=lambda: next(self.ids)
        )

    def load(self, version: str) -> HashEncoder:
        world = self

        class Counting(HashEncoder):
            def encode(self, texts: Any) -> Any:
                world.encoded += len(texts)
                return super().encode(texts)

        return Counting(version)

    def apply(self, change: Change, fan_out: bool = True) -> IngestReport:
        return apply_change(
            change,
            store=self.store,
            index=self.index,
            load_encoder=self.load,
            chunk_chars=CHUNK_CHARS,
            chunk_overlap=0,
            fan_out=self.runner if fan_out else None,
        )

    def live(self) -> str:
        current = read_manifest(self.store)
        assert current is not None
        return current[0].live.index_version


def vectors_by_chunk(index: MemoryVectorIndex, version: str) -> list[tuple[str, list[float]]]:
    chunks = list(index.chunks(version))
    found = index.vectors(version, {embed_hash(c) for c in chunks})
    return [(c.chunk_id, found[embed_hash(c)].round(6).tolist()) for c in chunks]


def test_a_large_first_ingest_fans_out_and_equals_one_built_in_process() -> None:
    fanned, direct = World(), World()
    docs = [doc(i) for i in range(5)]
    report = fanned.apply(Change(docs))
    expected = direct.apply(Change(docs), fan_out=False)
    assert fanned.workflows.started == ["job0"]
    assert report.embedded == expected.embedded == report.chunks > 3 and report.reused == 0
    assert vectors_by_chunk(fanned.index, fanned.live()) == vectors_by_chunk(direct.index, direct.live())
    assert fanned.store.list_keys("jobs/") == []  # the fan-out's files are gone
    assert fanned.encoded == report.embedded  # every chunk embedded once, by the map items


def test_an_edit_reuses_live_vectors_and_embeds_only_the_new_text_in_the_plan_order() -> None:
    world, direct = World(), World()
    base = [doc(i) for i in range(5)]
    world.apply(Change(base), fan_out=False)
    direct.apply(Change(base), fan_out=False)
    world.encoded = 0
    edited = [doc(1, " EDITED one"), doc(3, " EDITED two"), doc(9), doc(10)]  # two edits, two new documents
    report = world.apply(Change(edited))
    expected = direct.apply(Change(edited), fan_out=False)
    assert world.workflows.started == ["job0"]
    assert (report.embedded, report.reused, report.chunks) == (expected.embedded, expected.reused, expected.chunks)
    assert 3 < report.embedded < report.chunks and world.encoded == report.embedded  # reused vectors not embedded
    assert vectors_by_chunk(world.index, world.live()) == vectors_by_chunk(direct.index, direct.live())


def test_an_unchanged_corpus_starts_no_execution_and_embeds_nothing() -> None:
    world = World()
    docs = [doc(i) for i in range(5)]
    world.apply(Change(docs))
    world.encoded = 0
    report = world.apply(Change(docs, replace=True))
    assert world.workflows.started == ["job0"] and world.encoded == 0
    assert (report.changed, report.embedded) == (False, 0)


def test_a_change_that_fits_in_one_shard_embeds_in_process() -> None:
    world = World()
    world.apply(Change([doc(i) for i in range(5)]))
    report = world.apply(Change([doc(2, " a small edit")]))
    assert world.workflows.started == ["job0"]  # the first ingest only
    assert 0 < report.embedded <= 3


def test_a_failing_shard_leaves_no_version_the_pointer_unchanged_and_no_files() -> None:
    world = World(fail_item=1)
    world.apply(Change([doc(0)]), fan_out=False)
    before, versions, corpus = read_manifest(world.store), world.index.versions(), world.store.list_keys("corpus/")
    with pytest.raises(IngestError, match=r"failed: ConflictError: shard 1 failed; nothing changed"):
        world.apply(Change([doc(i) for i in range(1, 6)]))
    assert read_manifest(world.store) == before
    assert world.index.versions() == versions
    assert world.store.list_keys("jobs/") == []
    assert world.store.list_keys("corpus/") == corpus  # the claim of the version that was never built is gone


def test_a_pointer_moved_during_the_fan_out_is_the_ingest_conflict_and_keeps_nothing() -> None:
    world = World()
    world.apply(Change([doc(0)]), fan_out=False)
    other = World()
    other.apply(Change([doc(0)]), fan_out=False)
    real_start = world.workflows.start

    def start_then_move(name: str, payload: Any) -> str:
        current = read_manifest(world.store)
        assert current is not None
        swap(world.store, current[0].live, expected_etag=current[1], reason="a tune", documents=1, chunks=1)
        return real_start(name, payload)

    world.workflows.start = start_then_move  # type: ignore[method-assign]
    versions = world.index.versions()
    with pytest.raises(PointerMoved):
        world.apply(Change([doc(i) for i in range(1, 6)]))
    assert world.index.versions() == versions and world.store.list_keys("jobs/") == []


def test_a_wait_that_runs_out_says_the_execution_goes_on() -> None:
    world = World()
    world.workflows.hold = True
    ticks = iter(range(100))
    world.runner.wait_s, world.runner.clock = 5.0, lambda: float(next(ticks))
    with pytest.raises(FanoutPending, match="still running"):
        world.apply(Change([doc(i) for i in range(5)]))
    assert world.workflows.started == ["job0"] and len(world.store.list_keys("jobs/job0/fanout/shards/")) > 1


def test_vectors_of_the_assembled_version_are_the_encoders() -> None:
    world = World()
    report = world.apply(Change([doc(i) for i in range(5)]))
    chunks = list(world.index.chunks(report.index_version))
    got = world.index.vectors(report.index_version, {embed_hash(c) for c in chunks})
    expected = HashEncoder("v0").encode([embed_text(c) for c in chunks])
    assert all(np.allclose(got[embed_hash(c)], row) for c, row in zip(chunks, expected, strict=True))


def test_a_docs_batch_whose_fan_out_outlives_the_function_is_delivered_again() -> None:
    """The ingest function waits for the execution within its timeout; past it, every message that named a key
    is reported failed (SQS delivers them again), and the ignored one is not."""
    world = World()
    for i in range(5):
        world.store.put_bytes(f"docs/doc{i}.md", f"# Title {i}\n\n{doc(i).text}".encode())
    world.workflows.hold = True
    ticks = iter(range(100))
    world.runner.wait_s, world.runner.clock = 5.0, lambda: float(next(ticks))
    records = [record(f"docs/doc{i}.md", f"m{i}") for i in range(5)] + [record("other/x.md", "m-other")]
    result = handle_batch(
        records,
        store=world.store,
        index=world.index,
        load_encoder=world.load,
        bucket=BUCKET,
        prefix="docs/",
        retries=0,
        chunk_chars=CHUNK_CHARS,
        chunk_overlap=0,
        fan_out=world.runner,
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": f"m{i}"} for i in range(5)]}
    assert world.workflows.started == ["job0"] and read_manifest(world.store) is None
