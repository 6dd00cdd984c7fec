import pytest

from rag_autotune.domain import IndexStats, VersionPair
from rag_autotune.errors import ConflictError, NotReady
from rag_autotune.versions import (
    index_version,
    next_generation,
    next_model_version,
    read_manifest,
    rollback,
    swap,
    write_stats,
)
from tests.fakes import MemoryArtifactStore


def test_version_names() -> None:
    assert next_model_version([]) == "v0"
    assert next_model_version(["v0", "v7", "junk"]) == "v8"
    assert index_version("v3", 4) == "v3-c4"
    assert next_generation(["v0-c1", "v2-c3", "other"]) == 4


def test_swap_is_conditional_and_keeps_previous_pairs() -> None:
    store = MemoryArtifactStore()
    a, b, c = VersionPair("v0", "v0-c1"), VersionPair("v1", "v1-c1"), VersionPair("v2", "v2-c1")
    swap(store, a, expected_etag=None, reason="ingest", documents=3, chunks=5)
    with pytest.raises(ConflictError):
        swap(store, b, expected_etag=None, reason="second creator", documents=3, chunks=5)
    manifest, etag = read_manifest(store)  # type: ignore[misc]
    swap(store, b, expected_etag=etag, reason="tune", documents=3, chunks=5)
    with pytest.raises(ConflictError):  # a stale etag loses, and the manifest is unchanged
        swap(store, c, expected_etag=etag, reason="stale", documents=3, chunks=5)
    manifest, _ = read_manifest(store)  # type: ignore[misc]
    assert manifest.live == b and manifest.previous == (a,)


def test_retention_limits_previous() -> None:
    store = MemoryArtifactStore()
    etag = None
    for i in range(5):
        swap(store, VersionPair(f"v{i}", f"v{i}-c1"), expected_etag=etag, reason="", documents=1, chunks=1, keep=3)
        etag = read_manifest(store)[1]  # type: ignore[index]
    manifest = read_manifest(store)[0]  # type: ignore[index]
    assert [p.model_version for p in manifest.previous] == ["v3", "v2"]


def test_rollback_restores_previous_pair_and_its_counts() -> None:
    store = MemoryArtifactStore()
    with pytest.raises(NotReady):
        rollback(store)
    a, b = VersionPair("v0", "v0-c1"), VersionPair("v1", "v1-c1")
    write_stats(store, "v0-c1", IndexStats(10, 20))
    swap(store, a, expected_etag=None, reason="", documents=10, chunks=20)
    with pytest.raises(ConflictError):
        rollback(store)  # nothing to go back to
    swap(store, b, expected_etag=read_manifest(store)[1], reason="", documents=10, chunks=21)  # type: ignore[index]
    manifest = rollback(store)
    assert manifest.live == a and manifest.previous[0] == b
    assert (manifest.documents, manifest.chunks) == (10, 20)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_every_move_is_dated_by_the_clock_it_is_given() -> None:
    store, clock = MemoryArtifactStore(), Clock(1_700_000_000.0)
    a, b = VersionPair("v0", "v0-c1"), VersionPair("v1", "v1-c1")
    write_stats(store, "v0-c1", IndexStats(1, 1))
    first = swap(store, a, expected_etag=None, reason="ingest", documents=1, chunks=1, clock=clock)
    assert first.updated_at == "2023-11-14T22:13:20+00:00"
    clock.t += 3600.4  # seconds: the manifest keeps whole ones
    swap(store, b, expected_etag=read_manifest(store)[1], reason="tune", documents=1, chunks=1, clock=clock)  # type: ignore[index]
    assert read_manifest(store)[0].updated_at == "2023-11-14T23:13:20+00:00"  # type: ignore[index]
    clock.t += 60
    assert rollback(store, clock=clock).updated_at == "2023-11-14T23:14:20+00:00"
