"""The PartWriter contract (a version written in parts by many processes, then sealed) on every implementation
that is one: the server adapter (qdrant-client's local mode) and the fake. Edge and the plain fake are not, and
`part_writer` says so: the tune builds their versions from vector parts instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from rag_autotune.adapters.qdrant_edge import EdgeVectorIndex
from rag_autotune.adapters.qdrant_server import ServerVectorIndex
from rag_autotune.errors import ArtifactNotFound, ConflictError, IncompleteVersion, InvalidInput
from rag_autotune.ports import part_writer
from tests.contract.test_vector_index_contract import DIM, corpus
from tests.fakes import MemoryArtifactStore, MemoryPartIndex, MemoryVectorIndex


@pytest.fixture(params=["memory", "server"])
def index(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryPartIndex()
    else:
        client = QdrantClient(":memory:")
        yield ServerVectorIndex(client)
        client.close()


def test_which_indexes_take_parts(tmp_path: Path) -> None:
    client = QdrantClient(":memory:")
    edge = EdgeVectorIndex(MemoryArtifactStore(), tmp_path / "cache")
    assert part_writer(ServerVectorIndex(client)) is not None and part_writer(MemoryPartIndex()) is not None
    assert part_writer(edge) is None and part_writer(MemoryVectorIndex()) is None  # one file, one writer
    edge.close()
    client.close()


def test_parts_in_any_order_make_the_version_build_makes(index: Any) -> None:
    chunks, vecs = corpus(10, 3, "a")
    index.build("v1-c1", DIM, [(chunks, vecs)])
    index.begin("v1-c2", DIM)
    assert "v1-c2" not in index.versions()  # unsealed: not a version yet
    with pytest.raises(ArtifactNotFound):
        index.search("v1-c2", vecs[0], 3)
    assert index.write_part("v1-c2", 6, chunks[6:], vecs[6:]) == 4
    assert index.write_part("v1-c2", 0, chunks[:6], vecs[:6]) == 6
    assert index.seal("v1-c2", 10) == 10
    assert index.versions() == ["v1-c1", "v1-c2"]
    assert list(index.chunks("v1-c2")) == list(index.chunks("v1-c1"))  # ids are positions: plan order
    assert index.search("v1-c2", vecs[7], 1)[0].chunk == chunks[7]
    assert index.has_sparse("v1-c2")
    assert index.query("v1-c2", vecs[0], "text 7", 3, "hybrid-rrf").mode == "hybrid-rrf"


def test_a_part_written_again_overwrites_its_points(index: Any) -> None:
    chunks, vecs = corpus(8, 4, "a")
    index.begin("v1-c1", DIM, sparse=False)
    index.write_part("v1-c1", 0, chunks[:4], vecs[:4])
    index.write_part("v1-c1", 4, chunks[4:], vecs[4:])
    index.write_part("v1-c1", 4, chunks[4:], vecs[4:])  # a retried map item
    assert index.seal("v1-c1", 8) == 8
    assert index.count("v1-c1") == 8 and not index.has_sparse("v1-c1")


def test_seal_refuses_a_version_missing_points_and_leaves_it_for_delete(index: Any) -> None:
    chunks, vecs = corpus(8, 5, "a")
    index.begin("v1-c1", DIM)
    index.write_part("v1-c1", 0, chunks[:4], vecs[:4])
    with pytest.raises(IncompleteVersion, match="4 points, expected 8"):
        index.seal("v1-c1", 8)
    assert "v1-c1" not in index.versions()
    index.delete("v1-c1")
    with pytest.raises(ArtifactNotFound):  # deleted: a straggling item cannot write it back
        index.write_part("v1-c1", 4, chunks[4:], vecs[4:])


def test_unbegun_sealed_and_wrong_shapes_are_refused(index: Any) -> None:
    chunks, vecs = corpus(4, 6, "a")
    with pytest.raises(ArtifactNotFound):
        index.write_part("v1-c1", 0, chunks, vecs)
    with pytest.raises(ArtifactNotFound):
        index.seal("v1-c1", 0)
    with pytest.raises(InvalidInput):
        index.begin("v1-c1", 0)
    index.begin("v1-c1", DIM)
    with pytest.raises(InvalidInput):
        index.write_part("v1-c1", 0, chunks, np.zeros((4, DIM + 1), np.float32))
    index.write_part("v1-c1", 0, chunks, vecs)
    index.seal("v1-c1", 4)
    with pytest.raises(ConflictError):
        index.write_part("v1-c1", 0, chunks, vecs)  # sealed versions are immutable
    with pytest.raises(ConflictError):
        index.seal("v1-c1", 4)
    with pytest.raises(ConflictError):
        index.begin("v1-c1", DIM)


def test_begin_drops_an_unsealed_leftover_of_a_run_that_died(index: Any) -> None:
    chunks, vecs = corpus(6, 7, "a")
    index.begin("v1-c1", DIM)
    index.write_part("v1-c1", 0, chunks[:3], vecs[:3])
    index.begin("v1-c1", DIM)  # Plan retried: starts from nothing
    index.write_part("v1-c1", 3, chunks[3:], vecs[3:])
    with pytest.raises(IncompleteVersion):
        index.seal("v1-c1", 6)
