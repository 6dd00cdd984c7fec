"""Issue 13.2, the fan-out's logic on fakes: Plan's shards and item list, one map item, Assemble, Cleanup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag_autotune.chunking import embed_hash, embed_text
from rag_autotune.domain import VersionPair
from rag_autotune.ingest import ingest
from rag_autotune.ports import VectorIndex
from rag_autotune.settings import Settings
from rag_autotune.tune import fanout, steps
from rag_autotune.tune.runs import read_progress, read_run, update_run
from rag_autotune.tune.state import CleanupEvent, RunCounts, RunState, ShardTask, StepError
from tests.fakes import HashEncoder, MemoryArtifactStore, MemoryVectorIndex

DOCS = [(f"doc{i}", f"document {i} about topic {i % 3} with words w{i} and w{i + 1}") for i in range(11)]
SMALL = Settings(tune_embed_chunks_per_s=4.0, tune_embed_item_s=1.0)  # four chunks a shard


def CLOCK() -> float:
    return 1000.0


@pytest.fixture
def world(tmp_path: Path) -> tuple[MemoryArtifactStore, MemoryVectorIndex, RunState]:
    index = MemoryVectorIndex()
    store, state = fanout_world(tmp_path, index)
    return store, index, state


def fanout_world(tmp_path: Path, index: VectorIndex) -> tuple[MemoryArtifactStore, RunState]:
    """A live pair v0/v0-c1 ingested from DOCS into `index`, and run r1 past Train with candidate v1/v1-c1."""
    store = MemoryArtifactStore()
    store.put_bytes("models/v0/meta.json", b"{}")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"id": i, "title": i, "text": t}) for i, t in DOCS))
    ingest(corpus, store=store, index=index, load_encoder=lambda v: HashEncoder(v))
    store.put_bytes("models/v1/meta.json", b"{}")
    update_run(store, "r1", status="RUNNING", steps={})
    state = RunState(
        run_id="r1",
        status="RUNNING",
        live=VersionPair("v0", "v0-c1"),
        live_etag='"e"',
        counts=RunCounts(votes=6, new_votes=6),
        prefix="runs/r1/",
        candidate=VersionPair("v1", "v1-c1"),
    )
    return store, state


def test_shards_are_sized_from_the_measured_rate_and_the_target_seconds() -> None:
    assert fanout.shard_chunks(Settings(tune_embed_chunks_per_s=10.0, tune_embed_item_s=3.0)) == 30
    assert fanout.shard_chunks(Settings(tune_embed_chunks_per_s=0.5, tune_embed_item_s=1.0)) == 1
    assert fanout.shard_chunks(Settings()) > 1000  # a default shard is minutes of work, not a few chunks


def test_plan_writes_shards_and_an_item_list_of_keys(world: tuple) -> None:  # type: ignore[type-arg]
    store, index, state = world
    planned = fanout.plan(state, store=store, index=index, settings=SMALL, now=CLOCK).planned
    assert (planned.shards, planned.chunks) == (3, 11)
    items = json.loads(store.get_bytes(planned.items))
    assert [i["chunks"] for i in items] == [4, 4, 3]
    assert all(set(i) == {"index", "shard", "part", "chunks"} for i in items)  # keys and counts, never text
    assert all(i["shard"].startswith("runs/r1/fanout/shards/") for i in items)
    assert read_run(store, "r1")["step"] == "embed"
    assert read_progress(store, "r1") == {"step": "embed", "done": 0, "total": 11, "unit": "chunk", "at": 1000.0}


def test_the_fanned_out_version_equals_one_built_in_one_go(world: tuple) -> None:  # type: ignore[type-arg]
    store, index, state = world
    planned = fanout.plan(state, store=store, index=index, settings=SMALL, now=CLOCK)
    items = json.loads(store.get_bytes(planned.planned.items))
    for item in reversed(items):  # items finish in any order
        task = ShardTask.from_event({"run": planned.to_event(), "item": item})
        assert fanout.embed_shard(task, store=store, load_encoder=HashEncoder, now=CLOCK)["chunks"] == item["chunks"]
    assert read_progress(store, "r1")["done"] == 11  # type: ignore[index]
    done = fanout.assemble(planned, store=store, index=index, now=CLOCK)
    assert done.embedded == 11 and "v1-c1" in index.versions()
    live = list(index.chunks("v0-c1"))
    assert list(index.chunks("v1-c1")) == live  # the plan's order: point ids are positions in it
    hashes = {embed_hash(c) for c in live}
    expected = HashEncoder("v1").encode([embed_text(c) for c in live])
    got = index.vectors("v1-c1", hashes)
    assert all(np.allclose(got[embed_hash(c)], row) for c, row in zip(live, expected, strict=True))
    assert store.list_keys("runs/r1/fanout/") == []
    assert read_run(store, "r1")["steps"]["embed"] == {"seconds": 0.0}


def test_assemble_refuses_a_plan_with_a_part_missing_and_builds_nothing(world: tuple) -> None:  # type: ignore[type-arg]
    store, index, state = world
    planned = fanout.plan(state, store=store, index=index, settings=SMALL, now=CLOCK)
    items = json.loads(store.get_bytes(planned.planned.items))
    for item in items[:2]:  # the third item failed, and the Map ended anyway
        task = ShardTask.from_event({"run": planned.to_event(), "item": item})
        fanout.embed_shard(task, store=store, load_encoder=HashEncoder, now=CLOCK)
    with pytest.raises(fanout.ShardsIncomplete, match=r"1 of 3 shard\(s\) have no vector part: \[2\]"):
        fanout.assemble(planned, store=store, index=index, now=CLOCK)
    store.put_bytes(items[2]["part"], b"half a part")
    with pytest.raises(fanout.ShardsIncomplete):
        fanout.assemble(planned, store=store, index=index, now=CLOCK)
    assert "v1-c1" not in index.versions()


def test_an_item_that_ends_after_cleanup_leaves_no_part(world: tuple) -> None:  # type: ignore[type-arg]
    """Another item failed, the Map failed and Cleanup ran while this item was still embedding (a failed Map
    does not stop its Lambdas): the part it writes afterwards is removed by the item itself."""
    store, index, state = world
    planned = fanout.plan(state, store=store, index=index, settings=SMALL, now=CLOCK)
    items = json.loads(store.get_bytes(planned.planned.items))
    event = CleanupEvent(run_id="r1", run=planned, error=StepError(error="States.ExceedToleratedFailureThreshold"))

    def cleanup_meanwhile(version: str) -> HashEncoder:  # loaded mid-item, after the shard was read
        steps.cleanup(event, store=store, index=index, now=CLOCK)
        return HashEncoder(version)

    task = ShardTask.from_event({"run": planned.to_event(), "item": items[0]})
    fanout.embed_shard(task, store=store, load_encoder=cleanup_meanwhile, now=CLOCK)
    assert read_run(store, "r1")["status"] == "FAILED"
    assert store.list_keys("runs/r1/fanout/") == []
