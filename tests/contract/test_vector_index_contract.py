"""One contract for every VectorIndex: the in-memory fake, Qdrant Edge (shards shipped through an artifact
store) and a Qdrant server (here qdrant-client's local mode). Adapter-specific behaviour follows below."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from rag_autotune.adapters.qdrant_edge import EdgeVectorIndex
from rag_autotune.adapters.qdrant_server import ServerVectorIndex
from rag_autotune.chunking import embed_hash
from rag_autotune.domain import Chunk, Hit, RetrievalMode
from rag_autotune.errors import ArtifactNotFound, ConflictError, InvalidInput
from rag_autotune.ports import VectorIndex, Vectors
from rag_autotune.retrieval import NO_SPARSE, NO_TERMS
from rag_autotune.steering import Steer, steered_matrix_scores
from tests.fakes import MemoryArtifactStore, MemoryVectorIndex

DIM = 16
# Versions store their vectors at half precision (float16: about three significant digits), so a stored vector
# or a score matches the float32 original to 1e-3, not 1e-7.
STORED = 1e-3
Batches = list[tuple[Sequence[Chunk], Vectors]]


def corpus(n: int, seed: int, tag: str) -> tuple[list[Chunk], Vectors]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    chunks = [
        Chunk(
            f"{tag}-doc{i // 2}#{i % 2}",
            f"{tag}-doc{i // 2}",
            f"Title {tag} {i} — ünïcode",
            f"text {i}\nline 2",
        )
        for i in range(n)
    ]
    return chunks, vecs


def batches(chunks: list[Chunk], vecs: Vectors, size: int) -> Batches:
    return [(chunks[i : i + size], vecs[i : i + size]) for i in range(0, len(chunks), size)]


@pytest.fixture(params=["memory", "edge", "server"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    if request.param == "memory":
        yield MemoryVectorIndex()
    elif request.param == "edge":
        edge = EdgeVectorIndex(MemoryArtifactStore(), tmp_path / "cache")
        yield edge
        edge.close()
    else:
        client = QdrantClient(":memory:")
        yield ServerVectorIndex(client)
        client.close()


# -- the contract ----------------------------------------------------------------------------------------


def test_build_from_batches_returns_count(index: VectorIndex) -> None:
    chunks, vecs = corpus(13, 1, "a")
    assert index.build("v1-c1", DIM, batches(chunks, vecs, 5)) == 13
    assert index.count("v1-c1") == 13
    assert index.versions() == ["v1-c1"]


def test_search_nearest_first_with_payload_and_cosine(index: VectorIndex) -> None:
    chunks, vecs = corpus(20, 2, "a")
    index.build("v1-c1", DIM, batches(chunks, vecs, 8))
    hits = index.search("v1-c1", vecs[7], 5)
    assert hits[0].chunk == chunks[7]  # every field round-trips
    assert hits[0].score == pytest.approx(1.0, abs=STORED)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    expected = np.argsort(-(vecs @ vecs[7]))[:5]
    assert [h.chunk for h in hits] == [chunks[i] for i in expected]
    for h, i in zip(hits, expected, strict=True):
        assert h.score == pytest.approx(float(vecs[i] @ vecs[7]), abs=STORED)
    # a (1, dim) query works as well as a (dim,) one
    assert index.search("v1-c1", vecs[3:4], 1)[0].chunk == chunks[3]


def test_limit_respected(index: VectorIndex) -> None:
    chunks, vecs = corpus(10, 3, "a")
    index.build("v1-c1", DIM, batches(chunks, vecs, 4))
    assert len(index.search("v1-c1", vecs[0], 3)) == 3
    assert len(index.search("v1-c1", vecs[0], 1)) == 1
    assert len(index.search("v1-c1", vecs[0], 50)) == 10


def test_versions_are_isolated(index: VectorIndex) -> None:
    c1, v1 = corpus(10, 4, "one")
    c2, v2 = corpus(12, 5, "two")
    index.build("v1-c1", DIM, batches(c1, v1, 3))
    index.build("v1-c2", DIM, batches(c2, v2, 5))
    assert index.versions() == ["v1-c1", "v1-c2"]
    assert index.count("v1-c1") == 10
    assert index.count("v1-c2") == 12
    assert index.search("v1-c2", v2[4], 1)[0].chunk == c2[4]
    assert all(h.chunk in c1 for h in index.search("v1-c1", v2[4], 10))
    assert all(h.chunk in c2 for h in index.search("v1-c2", v1[4], 12))


def test_unknown_version_raises(index: VectorIndex) -> None:
    chunks, vecs = corpus(3, 6, "a")
    index.build("v1-c1", DIM, batches(chunks, vecs, 2))
    with pytest.raises(ArtifactNotFound):
        index.search("v9-c9", vecs[0], 3)
    with pytest.raises(ArtifactNotFound):
        list(index.chunks("v9-c9"))
    with pytest.raises(ArtifactNotFound):
        index.warm("v9-c9")
    index.warm("v1-c1")
    assert index.search("v1-c1", vecs[0], 1)[0].chunk == chunks[0]


def test_delete_is_idempotent(index: VectorIndex) -> None:
    chunks, vecs = corpus(6, 7, "a")
    index.build("v1-c1", DIM, batches(chunks, vecs, 4))
    index.build("v1-c2", DIM, batches(chunks, vecs, 4))
    index.search("v1-c1", vecs[0], 1)  # opened shards must be deletable too
    index.delete("v1-c1")
    index.delete("v1-c1")
    index.delete("v7-c7")  # never existed
    assert index.versions() == ["v1-c2"]
    with pytest.raises(ArtifactNotFound):
        index.search("v1-c1", vecs[0], 1)
    assert index.search("v1-c2", vecs[0], 1)[0].chunk == chunks[0]


def test_chunks_round_trip(index: VectorIndex) -> None:
    chunks, vecs = corpus(2500, 8, "a")  # more than one scroll page
    index.build("v1-c1", DIM, batches(chunks, vecs, 700))
    got = list(index.chunks("v1-c1"))
    assert len(got) == len(chunks)
    assert sorted(got, key=lambda c: c.chunk_id) == sorted(chunks, key=lambda c: c.chunk_id)


def test_link_page_and_section_round_trip_and_search_carries_them(index: VectorIndex) -> None:
    chunks, vecs = corpus(2, 7, "p")
    chunks[0] = Chunk(
        chunks[0].chunk_id, chunks[0].doc_id, "Guide › Install", "Install: text", "https://x.test/g", 3, "Install"
    )
    index.build("v1", DIM, batches(chunks, vecs, 2))
    assert list(index.chunks("v1")) == chunks  # the plain one keeps its defaults
    assert index.search("v1", vecs[0], 1)[0].chunk == chunks[0]


def test_a_payload_written_before_links_pages_and_sections_loads_with_defaults() -> None:
    from rag_autotune.adapters.qdrant_common import EMBED_HASH, chunk_payload, payload_chunk

    old = {"chunk_id": "a#0", "doc_id": "a", "title": "A", "text": "t"}
    assert payload_chunk(old) == Chunk("a#0", "a", "A", "t")
    plain = Chunk("a#0", "a", "A", "t")
    assert chunk_payload(plain) == old | {EMBED_HASH: embed_hash(plain)}  # no link, page or section keys


def test_vectors_found_by_embed_hash(index: VectorIndex) -> None:
    chunks, vecs = corpus(1500, 19, "a")  # more than one scroll page
    index.build("v1-c1", DIM, batches(chunks, vecs, 600))
    picked = [0, 7, 1024, 1499]
    wanted = [embed_hash(chunks[i]) for i in picked] + ["0" * 64]  # the last was never embedded
    got = index.vectors("v1-c1", wanted)
    assert sorted(got) == sorted(wanted[:-1])
    for i in picked:
        np.testing.assert_allclose(got[embed_hash(chunks[i])], vecs[i], atol=STORED)
    assert index.vectors("v1-c1", []) == {}
    with pytest.raises(ArtifactNotFound):
        index.vectors("v9-c9", wanted)
    index.build("v1-c2", DIM, [])
    assert index.vectors("v1-c2", wanted) == {}


def test_failed_build_leaves_no_trace(index: VectorIndex) -> None:
    chunks, vecs = corpus(10, 9, "a")

    def failing() -> Iterator[tuple[Sequence[Chunk], Vectors]]:
        yield chunks[:5], vecs[:5]
        raise RuntimeError("encoder died")

    with pytest.raises(RuntimeError, match="encoder died"):
        index.build("v1-c1", DIM, failing())
    assert index.versions() == []
    with pytest.raises(ArtifactNotFound):
        index.search("v1-c1", vecs[0], 1)
    # the same version can then be built for real
    assert index.build("v1-c1", DIM, batches(chunks, vecs, 5)) == 10


def test_empty_build_allowed(index: VectorIndex) -> None:
    assert index.build("v1-c1", DIM, []) == 0
    assert index.versions() == ["v1-c1"]
    assert index.count("v1-c1") == 0
    assert index.search("v1-c1", np.full(DIM, 0.25, dtype=np.float32), 5) == []
    assert list(index.chunks("v1-c1")) == []


# -- Qdrant Edge ---------------------------------------------------------------------------------------------


def test_edge_cold_load_from_snapshot(tmp_path: Path) -> None:
    store = MemoryArtifactStore()
    chunks, vecs = corpus(300, 10, "a")
    builder = EdgeVectorIndex(store, tmp_path / "builder")
    builder.build("v1-c1", DIM, batches(chunks, vecs, 128))
    assert sorted(store.objects) == ["indexes/v1-c1/info.json", "indexes/v1-c1/shard.tar"]

    reader = EdgeVectorIndex(store, tmp_path / "reader")
    try:
        assert reader.versions() == ["v1-c1"]
        assert reader.count("v1-c1") == 300
        reader.warm("v1-c1")  # downloads, unpacks (restoring the trimmed files' lengths) and opens the shard
        assert (tmp_path / "reader" / "v1-c1" / "shard").is_dir()
        hits = reader.search("v1-c1", vecs[42], 3)
        assert hits[0].chunk == chunks[42]
        assert hits[0].score == pytest.approx(1.0, abs=STORED)
        assert (tmp_path / "reader" / "v1-c1" / "shard").is_dir()
        assert list(reader.chunks("v1-c1")) == chunks
    finally:
        reader.close()
    # a new process with the same cache dir reuses the unpacked shard (no second download needed)
    store.objects.pop("indexes/v1-c1/shard.tar")
    again = EdgeVectorIndex(store, tmp_path / "reader")
    try:
        assert again.search("v1-c1", vecs[1], 1)[0].chunk == chunks[1]
    finally:
        again.close()


def test_edge_failed_build_leaves_no_keys_or_files(tmp_path: Path) -> None:
    store = MemoryArtifactStore()
    store.put_bytes("indexes/v1-c1/shard.tar", b"orphan of a run that died before info.json")
    index = EdgeVectorIndex(store, tmp_path / "cache")
    chunks, vecs = corpus(10, 11, "a")

    def failing() -> Iterator[tuple[Sequence[Chunk], Vectors]]:
        yield chunks[:5], vecs[:5]
        raise RuntimeError("boom")

    assert index.versions() == []
    with pytest.raises(RuntimeError):
        index.build("v1-c1", DIM, failing())
    assert store.list_keys("") == []
    assert list((tmp_path / "cache").iterdir()) == []


def test_edge_rebuild_of_existing_version_conflicts(tmp_path: Path) -> None:
    store = MemoryArtifactStore()
    index = EdgeVectorIndex(store, tmp_path / "cache")
    chunks, vecs = corpus(5, 12, "a")
    index.build("v1-c1", DIM, batches(chunks, vecs, 5))
    with pytest.raises(ConflictError):
        index.build("v1-c1", DIM, batches(chunks, vecs, 5))
    assert index.search("v1-c1", vecs[2], 1)[0].chunk == chunks[2]


def test_edge_stale_cache_is_not_served(tmp_path: Path) -> None:
    """A version name deleted and rebuilt elsewhere: the reader's cached files must not be used."""
    store = MemoryArtifactStore()
    old, old_v = corpus(5, 13, "old")
    new, new_v = corpus(5, 14, "new")
    writer = EdgeVectorIndex(store, tmp_path / "writer")
    writer.build("v1-c1", DIM, batches(old, old_v, 5))
    reader = EdgeVectorIndex(store, tmp_path / "reader")
    assert reader.search("v1-c1", old_v[0], 1)[0].chunk == old[0]
    reader.close()
    writer.delete("v1-c1")
    writer.build("v1-c1", DIM, batches(new, new_v, 5))
    reader = EdgeVectorIndex(store, tmp_path / "reader")
    try:
        assert reader.search("v1-c1", new_v[0], 1)[0].chunk == new[0]
    finally:
        reader.close()


def test_edge_lru_and_threads(tmp_path: Path) -> None:
    store = MemoryArtifactStore()
    index = EdgeVectorIndex(store, tmp_path / "cache", max_open=2)
    data = {f"v1-c{g}": corpus(40, 20 + g, f"g{g}") for g in range(3)}
    for version, (chunks, vecs) in data.items():
        index.build(version, DIM, batches(chunks, vecs, 16))
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(10):
                version = f"v1-c{rng.integers(3)}"
                chunks, vecs = data[version]
                i = int(rng.integers(40))
                assert index.search(version, vecs[i], 1)[0].chunk == chunks[i]
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # at most max_open shards stay unpacked locally (Lambda /tmp is small)
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) <= 2
    index.close()


def test_edge_rejects_wrong_dims(tmp_path: Path) -> None:
    index = EdgeVectorIndex(MemoryArtifactStore(), tmp_path / "cache")
    chunks, vecs = corpus(4, 15, "a")
    with pytest.raises(InvalidInput):
        index.build("v1-c1", DIM + 1, batches(chunks, vecs, 4))
    index.build("v1-c1", DIM, batches(chunks, vecs, 4))
    with pytest.raises(InvalidInput):
        index.search("v1-c1", np.ones(DIM + 1, dtype=np.float32), 1)
    with pytest.raises(InvalidInput):
        index.search("../etc", vecs[0], 1)
    index.close()


# -- Qdrant server -----------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[ServerVectorIndex, QdrantClient]]:
    client = QdrantClient(":memory:")
    yield ServerVectorIndex(client), client
    client.close()


def _aliases(client: QdrantClient) -> dict[str, str]:
    return {a.alias_name: a.collection_name for a in client.get_aliases().aliases}


def test_server_publish_swaps_alias(server: tuple[ServerVectorIndex, QdrantClient]) -> None:
    index, client = server
    chunks, vecs = corpus(5, 16, "a")
    index.build("v1-c1", DIM, batches(chunks, vecs, 5))
    index.build("v1-c2", DIM, batches(chunks, vecs, 5))
    assert _aliases(client) == {}
    index.publish("v1-c1")  # no alias yet: create only
    assert _aliases(client) == {"rag-live": "rag_v1-c1"}
    index.publish("v1-c2")  # delete + create in one call
    assert _aliases(client) == {"rag-live": "rag_v1-c2"}
    index.publish("v1-c2")  # idempotent
    assert _aliases(client) == {"rag-live": "rag_v1-c2"}
    assert index.published() == "v1-c2"
    with pytest.raises(ArtifactNotFound):
        index.publish("v9-c9")
    assert _aliases(client) == {"rag-live": "rag_v1-c2"}


def test_server_refuses_to_delete_the_live_collection(server: tuple[ServerVectorIndex, QdrantClient]) -> None:
    index, client = server
    chunks, vecs = corpus(5, 17, "a")
    index.build("v1-c1", DIM, batches(chunks, vecs, 5))
    index.build("v1-c2", DIM, batches(chunks, vecs, 5))
    index.publish("v1-c2")
    with pytest.raises(ConflictError):
        index.delete("v1-c2")
    assert client.collection_exists("rag_v1-c2")
    index.delete("v1-c1")
    assert index.versions() == ["v1-c2"]


def test_server_orphans_and_conflicts(server: tuple[ServerVectorIndex, QdrantClient]) -> None:
    index, client = server
    client.create_collection(
        "rag_v1-c1",
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        metadata={"rag_autotune": {"state": "building", "dim": DIM}},
    )
    client.create_collection("other", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    assert index.versions() == []  # a build that never finished is not a version
    with pytest.raises(ArtifactNotFound):
        index.search("v1-c1", np.ones(DIM, dtype=np.float32), 1)
    chunks, vecs = corpus(5, 18, "a")
    assert index.build("v1-c1", DIM, batches(chunks, vecs, 2)) == 5  # the orphan is replaced
    with pytest.raises(ConflictError):
        index.build("v1-c1", DIM, batches(chunks, vecs, 2))
    with pytest.raises(InvalidInput):
        index.search("v1-c1", np.ones(DIM + 1, dtype=np.float32), 1)
    assert index.versions() == ["v1-c1"]


# -- hybrid retrieval: the same contract for every adapter ---------------------------------------------------

WORDS = [
    "apple",
    "banana",
    "cherry",
    "dolphin",
    "eagle",
    "falcon",
    "giraffe",
    "harbor",
    "island",
    "jungle",
    "kettle",
    "lantern",
    "meadow",
    "nickel",
    "orchid",
    "pepper",
    "quartz",
    "raven",
    "saddle",
    "tulip",
]
HYBRID = ("hybrid-rrf", "hybrid-dbsf")


def worded(n: int, seed: int) -> tuple[list[Chunk], Vectors]:
    """Chunks whose text holds one word no other chunk has (BM25 finds it whatever the dense vectors say)."""
    chunks, vecs = corpus(n, seed, "w")
    return [Chunk(c.chunk_id, c.doc_id, c.title, f"{c.text} about the {WORDS[i]}") for i, c in enumerate(chunks)], vecs


def same_hits(a: Sequence[Hit], b: Sequence[Hit]) -> bool:
    """The same chunks in the same order, scores equal to float precision (local mode recomputes them)."""
    return [h.chunk for h in a] == [h.chunk for h in b] and all(
        x.score == pytest.approx(y.score, abs=1e-5) for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("mode", HYBRID)
def test_hybrid_finds_the_chunk_whose_word_the_query_names(index: VectorIndex, mode: RetrievalMode) -> None:
    chunks, vecs = worded(20, 30)
    index.build("v1-c1", DIM, batches(chunks, vecs, 7))
    assert index.has_sparse("v1-c1")
    far = int(np.argsort(vecs @ vecs[0])[0])  # the chunk the dense vector ranks last
    dense = index.search("v1-c1", vecs[0], 5)
    assert chunks[far] not in [h.chunk for h in dense]
    found = index.query("v1-c1", vecs[0], f"what about the {WORDS[far]}?", 5, mode)
    assert found.mode == mode and found.reason == ""
    got = [h.chunk for h in found.hits]
    assert chunks[far] in got and chunks[0] in got  # both sides reach the fused list
    assert len(got) == len(set(got)) <= 5
    scores = [h.score for h in found.hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("text", ["the of and is", "?!… ,,, ;", ""])
def test_a_query_without_bm25_terms_is_answered_dense(index: VectorIndex, text: str) -> None:
    chunks, vecs = worded(12, 31)
    index.build("v1-c1", DIM, batches(chunks, vecs, 5))
    for mode in HYBRID:
        found = index.query("v1-c1", vecs[3], text, 4, mode)
        assert found.mode == "dense" and found.reason == NO_TERMS
        assert same_hits(found.hits, index.search("v1-c1", vecs[3], 4))


def test_a_version_without_bm25_vectors_is_answered_dense(index: VectorIndex) -> None:
    chunks, vecs = worded(12, 32)
    index.build("v1-c1", DIM, batches(chunks, vecs, 5), sparse=False)
    assert not index.has_sparse("v1-c1")
    found = index.query("v1-c1", vecs[2], f"the {WORDS[9]}", 3, "hybrid-rrf")
    assert found.mode == "dense" and found.reason == NO_SPARSE
    assert same_hits(found.hits, index.search("v1-c1", vecs[2], 3))


def test_dense_mode_is_search(index: VectorIndex) -> None:
    chunks, vecs = worded(10, 33)
    index.build("v1-c1", DIM, batches(chunks, vecs, 5))
    found = index.query("v1-c1", vecs[1], f"the {WORDS[7]}", 3, "dense")
    assert found.mode == "dense" and found.reason == ""
    assert same_hits(found.hits, index.search("v1-c1", vecs[1], 3))


def test_hybrid_on_empty_and_unknown_versions(index: VectorIndex) -> None:
    index.build("v1-c1", DIM, [])
    assert index.query("v1-c1", np.full(DIM, 0.25, dtype=np.float32), "apple", 5, "hybrid-rrf").hits == []
    with pytest.raises(ArtifactNotFound):
        index.query("v9-c9", np.full(DIM, 0.25, dtype=np.float32), "apple", 5, "hybrid-dbsf")
    with pytest.raises(ArtifactNotFound):
        index.has_sparse("v9-c9")


def test_edge_hybrid_after_cold_load_and_old_versions_read_as_dense(tmp_path: Path) -> None:
    store = MemoryArtifactStore()
    chunks, vecs = worded(20, 34)
    EdgeVectorIndex(store, tmp_path / "builder").build("v1-c1", DIM, batches(chunks, vecs, 8))
    EdgeVectorIndex(store, tmp_path / "builder").build("v1-c2", DIM, batches(chunks, vecs, 8))
    # v1-c2 as a version written before hybrid retrieval: its info.json has no "sparse"
    info = json.loads(store.objects["indexes/v1-c2/info.json"])
    del info["sparse"]
    store.objects["indexes/v1-c2/info.json"] = json.dumps(info).encode()
    reader = EdgeVectorIndex(store, tmp_path / "reader")
    try:
        found = reader.query("v1-c1", vecs[0], f"the {WORDS[11]}", 5, "hybrid-rrf")
        assert found.mode == "hybrid-rrf" and chunks[11] in [h.chunk for h in found.hits]
        assert not reader.has_sparse("v1-c2")
        assert reader.query("v1-c2", vecs[0], f"the {WORDS[11]}", 5, "hybrid-rrf").mode == "dense"
    finally:
        reader.close()


def test_a_chunk_without_bm25_terms_is_stored_and_found_dense(index: VectorIndex) -> None:
    chunks, vecs = worded(6, 35)
    chunks[2] = Chunk(chunks[2].chunk_id, chunks[2].doc_id, "", "… ?! the of")
    index.build("v1-c1", DIM, batches(chunks, vecs, 6))
    assert index.count("v1-c1") == 6
    assert chunks[2] in [h.chunk for h in index.query("v1-c1", vecs[2], f"the {WORDS[4]}", 6, "hybrid-rrf").hits]


def test_server_collections_made_before_hybrid_answer_dense(server: tuple[ServerVectorIndex, QdrantClient]) -> None:
    index, client = server
    chunks, vecs = worded(5, 36)
    client.create_collection(
        "rag_v1-c1",
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        metadata={"rag_autotune": {"state": "ready", "dim": DIM, "points": 5}},  # as written before hybrid
    )
    client.upsert(
        "rag_v1-c1",
        models.Batch(
            ids=list(range(5)),
            vectors=vecs.tolist(),
            payloads=[{"chunk_id": c.chunk_id, "doc_id": c.doc_id, "title": c.title, "text": c.text} for c in chunks],
        ),
    )
    assert index.versions() == ["v1-c1"] and not index.has_sparse("v1-c1")
    found = index.query("v1-c1", vecs[1], f"the {WORDS[3]}", 2, "hybrid-rrf")
    assert found.mode == "dense" and found.reason == NO_SPARSE and found.hits[0].chunk == chunks[1]


# -- vote steering: the engine's relevance feedback query, and the voted chunks' vectors ------------------


def _steer(vecs: Vectors, up: int, down: int, a: float, b: float, c: float, up_score: float = 2.0) -> Steer:
    return Steer(vecs[up], up_score, vecs[down], -1.0, a, b, c, questions=1)


@pytest.mark.parametrize(("a", "b", "c"), [(1.0, 1.0, 0.2), (0.5, 2.0, 0.05), (1.0, 0.5, 1.0)])
def test_steered_dense_query_scores_as_the_formula(index: VectorIndex, a: float, b: float, c: float) -> None:
    """Every engine scores a steered query as steering.py's formula does over the whole version: the same
    order and the same scores (so the tune's fit in numpy is what serving gets)."""
    chunks, vecs = corpus(40, 11, "s")
    index.build("v1-c1", DIM, batches(chunks, vecs, 16))
    target = vecs[3]
    steer = _steer(vecs, 17, 25, a, b, c)
    found = index.query("v1-c1", target, "", 10, "dense", steer)
    expected = steered_matrix_scores(vecs, target, steer)
    assert found.steered and found.mode == "dense"
    assert [h.chunk.chunk_id for h in found.hits] == [chunks[i].chunk_id for i in np.argsort(-expected)[:10]]
    assert [h.score for h in found.hits] == pytest.approx(sorted(expected, reverse=True)[:10], abs=STORED)


def test_steering_moves_the_ranking_toward_the_up_vote(index: VectorIndex) -> None:
    chunks, vecs = corpus(40, 12, "s")
    index.build("v1-c1", DIM, batches(chunks, vecs, 16))
    plain = index.query("v1-c1", vecs[3], "", 40, "dense")
    steered = index.query("v1-c1", vecs[3], "", 40, "dense", _steer(vecs, 17, 25, 1.0, 1.0, 1.0))
    assert not plain.steered
    rank = {h.chunk.chunk_id: i for i, h in enumerate(plain.hits)}
    rank_steered = {h.chunk.chunk_id: i for i, h in enumerate(steered.hits)}
    assert rank_steered[chunks[17].chunk_id] < rank[chunks[17].chunk_id]
    assert rank_steered[chunks[25].chunk_id] > rank[chunks[25].chunk_id]


@pytest.mark.parametrize("mode", ["hybrid-rrf", "hybrid-dbsf"])
def test_steered_hybrid_query_keeps_its_mode(index: VectorIndex, mode: RetrievalMode) -> None:
    chunks, vecs = corpus(30, 13, "h")
    chunks[5] = Chunk(chunks[5].chunk_id, chunks[5].doc_id, chunks[5].title, "the zanzibar tunable")
    index.build("v1-c1", DIM, batches(chunks, vecs, 10))
    found = index.query("v1-c1", vecs[9], "zanzibar", 10, mode, _steer(vecs, 17, 25, 1.0, 1.0, 1.0))
    assert found.steered and found.mode == mode
    ids = [h.chunk.chunk_id for h in found.hits]
    assert chunks[5].chunk_id in ids and chunks[17].chunk_id in ids


def test_chunk_vectors_by_chunk_id(index: VectorIndex) -> None:
    chunks, vecs = corpus(30, 14, "v")
    index.build("v1-c1", DIM, batches(chunks, vecs, 7))
    wanted = [chunks[2].chunk_id, chunks[29].chunk_id, "no-such-doc#0"]
    found = index.chunk_vectors("v1-c1", wanted)
    assert set(found) == {chunks[2].chunk_id, chunks[29].chunk_id}
    np.testing.assert_allclose(found[chunks[29].chunk_id], vecs[29], atol=STORED)
    assert index.chunk_vectors("v1-c1", []) == {}
    with pytest.raises(ArtifactNotFound):
        index.chunk_vectors("v9-c9", wanted)


def test_a_server_without_the_relevance_feedback_query_steers_with_the_formula_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Qdrant server before 1.17 refuses the query (400): the adapter scores steering.py's formula over the
    plain nearest chunks itself, from then on, and answers as the engine would have."""
    client = QdrantClient(":memory:")
    index = ServerVectorIndex(client)
    chunks, vecs = corpus(40, 15, "o")
    index.build("v1-c1", DIM, batches(chunks, vecs, 16))
    steer = _steer(vecs, 17, 25, 1.0, 1.0, 0.3)
    native = index.query("v1-c1", vecs[3], "", 10, "dense", steer)
    real = client.query_points
    refused: list[object] = []

    def old_server(name: str, **kw: object) -> object:
        if isinstance(kw.get("query"), models.RelevanceFeedbackQuery):
            refused.append(kw["query"])
            raise UnexpectedResponse(400, "Bad Request", b'{"status": {"error": "unknown variant"}}', httpx.Headers())
        return real(name, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(client, "query_points", old_server)
    here = index.query("v1-c1", vecs[3], "", 10, "dense", steer)
    again = index.query("v1-c1", vecs[3], "", 10, "dense", steer)
    assert len(refused) == 1  # asked once, then scored here
    for found in (here, again):
        assert found.steered and found.mode == "dense"
        assert [h.chunk.chunk_id for h in found.hits] == [h.chunk.chunk_id for h in native.hits]
        assert [h.score for h in found.hits] == pytest.approx([h.score for h in native.hits], abs=1e-4)
    hybrid = index.query("v1-c1", vecs[3], "text", 10, "hybrid-rrf", steer)
    assert hybrid.mode == "hybrid-rrf" and not hybrid.steered  # the engine fuses: it cannot take our scores
    client.close()
