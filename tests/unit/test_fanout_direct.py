"""Issue 13.5, the fan-out's direct writes on fakes: with an index that takes parts, Plan begins the candidate,
each map item writes its points there and a done marker, Assemble checks and seals. The same steps on the
server adapter (local mode), retries and faults included: tests/integration/test_qdrant_server_fanout.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag_autotune.chunking import embed_hash, embed_text
from rag_autotune.domain import Chunk
from rag_autotune.tune import fanout
from rag_autotune.tune.runs import read_progress
from rag_autotune.tune.state import DirectWrites, RunState, ShardTask
from rag_autotune.versions import read_stats
from tests.fakes import HashEncoder, MemoryArtifactStore, MemoryPartIndex
from tests.unit.test_fanout import CLOCK, SMALL, fanout_world

World = tuple[MemoryArtifactStore, MemoryPartIndex, RunState]


@pytest.fixture
def world(tmp_path: Path) -> World:
    index = MemoryPartIndex()
    store, state = fanout_world(tmp_path, index)
    planned = fanout.plan(state, store=store, index=index, settings=SMALL, now=CLOCK, load_encoder=HashEncoder)
    return store, index, planned


def run_item(store: MemoryArtifactStore, index: MemoryPartIndex, planned: RunState, n: int) -> None:
    item = json.loads(store.get_bytes(planned.planned.items))[n]
    task = ShardTask.from_event({"run": planned.to_event(), "item": item})
    fanout.embed_shard(task, store=store, load_encoder=HashEncoder, now=CLOCK, index=index)


def test_plan_begins_the_candidate_unsealed_with_the_encoders_dim(world: World) -> None:
    store, index, planned = world
    assert planned.planned.direct == DirectWrites(docs=11, dense_only="")
    dim, sparse, points = index.unsealed["v1-c1"]
    assert (dim, sparse, points) == (HashEncoder().dim, True, {})
    assert "v1-c1" not in index.versions()
    items = json.loads(store.get_bytes(planned.planned.items))
    assert [i["part"].rsplit("/", 1)[1] for i in items] == ["00000.done", "00001.done", "00002.done"]


def test_items_write_points_and_markers_and_assemble_seals_what_a_build_makes(world: World) -> None:
    store, index, planned = world
    for n in (2, 0, 1):  # items finish in any order
        run_item(store, index, planned, n)
    markers = [json.loads(store.get_bytes(k)) for k in store.list_keys("runs/r1/fanout/parts/")]
    assert markers == [{"points": 4}, {"points": 4}, {"points": 3}]  # no vectors pass through S3
    assert read_progress(store, "r1")["done"] == 11  # type: ignore[index]
    done = fanout.assemble(planned, store=store, index=index, now=CLOCK)
    assert done.embedded == 11 and "v1-c1" in index.versions() and "v1-c1" not in index.unsealed
    live = list(index.chunks("v0-c1"))
    assert list(index.chunks("v1-c1")) == live  # plan positions: the plan's order
    expected = HashEncoder("v1").encode([embed_text(c) for c in live])
    got = index.vectors("v1-c1", {embed_hash(c) for c in live})
    assert all(np.allclose(got[embed_hash(c)], row) for c, row in zip(live, expected, strict=True))
    assert index.has_sparse("v1-c1")
    stats = read_stats(store, "v1-c1")
    assert (stats.documents, stats.chunks, stats.mode) == (11, 11, "dense")
    assert store.list_keys("runs/r1/fanout/") == []


def test_assemble_refuses_a_missing_or_wrong_marker_and_seals_nothing(world: World) -> None:
    store, index, planned = world
    run_item(store, index, planned, 0)
    run_item(store, index, planned, 1)
    with pytest.raises(fanout.ShardsIncomplete, match=r"1 of 3 shard\(s\) have no vector part: \[2\]"):
        fanout.assemble(planned, store=store, index=index, now=CLOCK)
    item = json.loads(store.get_bytes(planned.planned.items))[2]
    store.put_bytes(item["part"], b'{"points": 2}')  # the marker says the item wrote less than its shard
    with pytest.raises(fanout.ShardsIncomplete, match=r"wrong done marker: \[2\]"):
        fanout.assemble(planned, store=store, index=index, now=CLOCK)
    store.put_bytes(item["part"], b'{"points": 3}')  # a marker whose points never arrived
    with pytest.raises(fanout.ShardsIncomplete, match="holds 8 points, expected 11"):
        fanout.assemble(planned, store=store, index=index, now=CLOCK)
    assert "v1-c1" not in index.versions()


def test_an_assemble_retried_after_its_seal_finishes_the_same_version(world: World) -> None:
    store, index, planned = world
    for n in range(3):
        run_item(store, index, planned, n)
    index.seal("v1-c1", 11)  # the first attempt sealed, then lost its stats write
    assert fanout.assemble(planned, store=store, index=index, now=CLOCK).embedded == 11
    assert read_stats(store, "v1-c1").chunks == 11


def test_a_corpus_bm25_cannot_rank_gets_a_dense_candidate(tmp_path: Path) -> None:
    index = MemoryPartIndex()
    store, state = fanout_world(tmp_path, index)
    index.published = None
    index.delete("v0-c1")  # the live version again, with chunks that hold no letters
    digits = [Chunk(f"d{i}#0", f"d{i}", "", f"{i} 123 456") for i in range(5)]
    index.build("v0-c1", 4, [(digits, np.ones((5, 4), np.float32))])
    planned = fanout.plan(state, store=store, index=index, settings=SMALL, now=CLOCK, load_encoder=HashEncoder)
    direct = planned.planned.direct
    assert direct and "no letters" in direct.dense_only and index.unsealed["v1-c1"][1] is False
    for n in range(planned.planned.shards):
        run_item(store, index, planned, n)
    fanout.assemble(planned, store=store, index=index, now=CLOCK)
    assert not index.has_sparse("v1-c1") and "no letters" in read_stats(store, "v1-c1").mode_reason
