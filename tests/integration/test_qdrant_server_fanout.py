"""Issue 13.5 on the server adapter (qdrant-client's local mode, the same code path as a server): map items
write straight into the shadow collection, a retried item never doubles its points, a failed shard leaves no
collection behind and the live alias where it was, and the collection's sharding comes from settings."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from rag_autotune.adapters import qdrant_server
from rag_autotune.adapters.qdrant_server import ServerVectorIndex
from rag_autotune.domain import Chunk
from rag_autotune.errors import ArtifactNotFound, UpstreamError
from rag_autotune.ports import Vectors
from rag_autotune.runtime import Runtime
from rag_autotune.settings import Settings
from rag_autotune.tune import fanout, steps
from rag_autotune.tune.runs import read_run
from rag_autotune.tune.state import CleanupEvent, RunState, ShardTask, StepError
from tests.fakes import HashEncoder, MemoryArtifactStore
from tests.unit.test_fanout import CLOCK, SMALL, fanout_world

World = tuple[MemoryArtifactStore, ServerVectorIndex, QdrantClient, RunState]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    client = QdrantClient(":memory:")
    index = ServerVectorIndex(client)
    store, state = fanout_world(tmp_path, index)  # ingest publishes v0-c1: the alias points at it
    planned = fanout.plan(state, store=store, index=index, settings=SMALL, now=CLOCK, load_encoder=HashEncoder)
    yield store, index, client, planned
    client.close()


def collections(client: QdrantClient) -> list[str]:
    return sorted(c.name for c in client.get_collections().collections)


def task(store: MemoryArtifactStore, planned: RunState, n: int) -> ShardTask:
    item = json.loads(store.get_bytes(planned.planned.items))[n]
    return ShardTask.from_event({"run": planned.to_event(), "item": item})


class AckLost(ServerVectorIndex):
    """The server stored the part, and the answer never reached the item (a timeout): the item fails after
    its points landed, and its Retry writes them again."""

    def __init__(self, client: QdrantClient) -> None:
        super().__init__(client)
        self.lost = 0

    def write_part(self, version: str, offset: int, chunks: Sequence[Chunk], vectors: Vectors) -> int:
        n = super().write_part(version, offset, chunks, vectors)
        if not self.lost:
            self.lost += 1
            raise UpstreamError("qdrant upsert: read timed out")
        return n


def test_a_retried_item_overwrites_its_points_and_the_count_does_not_double(world: World) -> None:
    store, _, client, planned = world
    flaky = AckLost(client)
    with pytest.raises(UpstreamError):
        fanout.embed_shard(task(store, planned, 0), store=store, load_encoder=HashEncoder, now=CLOCK, index=flaky)
    assert client.count("rag_v1-c1", exact=True).count == 4  # the first attempt's points are there
    for n in (0, 0, 1, 2):  # item 0's Retry, and once more for good measure
        fanout.embed_shard(task(store, planned, n), store=store, load_encoder=HashEncoder, now=CLOCK, index=flaky)
    assert client.count("rag_v1-c1", exact=True).count == 11
    done = fanout.assemble(planned, store=store, index=flaky, now=CLOCK)
    assert done.embedded == 11 and flaky.count("v1-c1") == 11
    assert flaky.versions() == ["v0-c1", "v1-c1"] and flaky.published() == "v0-c1"  # Swap moves the alias


def test_a_failed_shard_leaves_no_collection_and_live_serving_untouched(world: World) -> None:
    store, index, client, planned = world
    live = index.search("v0-c1", HashEncoder("v0").encode(["document 3 about topic 0"])[0], 3)
    fanout.embed_shard(task(store, planned, 0), store=store, load_encoder=HashEncoder, now=CLOCK, index=index)

    def broken(version: str) -> Any:
        raise UpstreamError("the model download reset")

    with pytest.raises(UpstreamError):  # the item fails after its Retry: the Map fails, the Catch runs Cleanup
        fanout.embed_shard(task(store, planned, 1), store=store, load_encoder=broken, now=CLOCK, index=index)
    assert "rag_v1-c1" in collections(client)  # unsealed, half written
    event = CleanupEvent(run_id="r1", run=planned, error=StepError(error="States.ExceedToleratedFailureThreshold"))

    def cleanup_meanwhile(version: str) -> HashEncoder:  # item 2 still runs (a failed Map does not stop it)
        steps.cleanup(event, store=store, index=index, now=CLOCK)
        assert collections(client) == ["rag_v0-c1"]
        return HashEncoder(version)

    with pytest.raises(ArtifactNotFound):  # so its write finds no collection, and cannot bring one back
        fanout.embed_shard(task(store, planned, 2), store=store, load_encoder=cleanup_meanwhile, now=CLOCK, index=index)
    assert collections(client) == ["rag_v0-c1"] and index.published() == "v0-c1"
    assert index.search("v0-c1", HashEncoder("v0").encode(["document 3 about topic 0"])[0], 3) == live
    assert read_run(store, "r1")["status"] == "FAILED" and store.list_keys("runs/r1/fanout/") == []


class Spy(QdrantClient):
    """A local-mode client that records create_collection's sharding arguments (local mode ignores them)."""

    def __init__(self, *_: Any, **__: Any) -> None:
        super().__init__(":memory:")
        self.created: list[dict[str, Any]] = []

    def create_collection(self, collection_name: str, **kw: Any) -> bool:
        keys = ("shard_number", "replication_factor", "write_consistency_factor")
        self.created.append({k: kw.get(k) for k in keys})
        return super().create_collection(collection_name, **kw)


@pytest.mark.parametrize(("shards", "replication"), [(1, 1), (6, 2)])
def test_settings_give_each_collection_its_shards_and_replicas(
    monkeypatch: pytest.MonkeyPatch, shards: int, replication: int
) -> None:
    monkeypatch.setattr(qdrant_server, "QdrantClient", Spy)
    monkeypatch.setenv("QDRANT_URL", "http://qdrant.invalid:6333")
    monkeypatch.setenv("RAG_QDRANT_SHARDS", str(shards))
    monkeypatch.setenv("RAG_QDRANT_REPLICATION", str(replication))
    index = Runtime(Settings()).index
    assert isinstance(index, ServerVectorIndex)
    index.begin("v1-c1", 8)
    spy = index._client
    assert isinstance(spy, Spy)
    assert spy.created == [
        {"shard_number": shards, "replication_factor": replication, "write_consistency_factor": replication}
    ]
    spy.close()
