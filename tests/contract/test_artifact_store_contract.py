"""ArtifactStore contract: the same assertions against the in-memory fake and S3ArtifactStore on moto's
server."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest

from rag_autotune.adapters.aws import CLIENT_CONFIG
from rag_autotune.adapters.s3 import S3ArtifactStore
from rag_autotune.errors import ArtifactNotFound, ConflictError, UpstreamError
from rag_autotune.local.resources import ensure_bucket
from rag_autotune.ports import ArtifactStore
from tests.fakes import MemoryArtifactStore


@pytest.fixture(scope="module")
def s3_client(moto_url: str) -> Any:
    """One client per module: building a boto3 client costs ~0.3 s."""
    return boto3.session.Session().client("s3", region_name="us-east-1", endpoint_url=moto_url, config=CLIENT_CONFIG)


@pytest.fixture(params=["memory", "s3"])
def store(request: pytest.FixtureRequest) -> ArtifactStore:
    if request.param == "memory":
        return MemoryArtifactStore()
    unique: str = request.getfixturevalue("unique")
    client = request.getfixturevalue("s3_client")
    bucket = f"rag-contract-{unique}"
    ensure_bucket(client, bucket, "us-east-1")
    return S3ArtifactStore(client, bucket)


def test_put_get_round_trip(store: ArtifactStore) -> None:
    data = bytes(range(256)) * 10
    etag = store.put_bytes("models/v1/blob.bin", data)
    assert store.get_bytes("models/v1/blob.bin") == data
    assert store.get_with_etag("models/v1/blob.bin") == (data, etag)
    etag2 = store.put_bytes("models/v1/blob.bin", b"new", content_type="text/plain")
    assert etag2 != etag
    assert store.get_with_etag("models/v1/blob.bin") == (b"new", etag2)


def test_missing_key_raises_not_found(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFound):
        store.get_bytes("nope")
    with pytest.raises(ArtifactNotFound):
        store.get_with_etag("nope")
    target = tmp_path / "sub" / "nope.bin"
    with pytest.raises(ArtifactNotFound):
        store.download_file("nope", target)
    assert not target.exists()


def test_head_etag(store: ArtifactStore) -> None:
    assert store.head_etag("manifest.json") is None
    etag = store.put_bytes("manifest.json", b'{"live": 1}', content_type="application/json")
    assert store.head_etag("manifest.json") == etag


def test_put_if_create_only(store: ArtifactStore) -> None:
    etag = store.put_if("manifest.json", b"first", None)
    assert store.head_etag("manifest.json") == etag
    with pytest.raises(ConflictError):
        store.put_if("manifest.json", b"second", None)
    assert store.get_bytes("manifest.json") == b"first"


def test_put_if_matching_etag_swaps(store: ArtifactStore) -> None:
    etag1 = store.put_if("manifest.json", b"v1", None)
    etag2 = store.put_if("manifest.json", b"v2", etag1)
    assert etag2 != etag1
    assert store.get_with_etag("manifest.json") == (b"v2", etag2)


def test_put_if_stale_etag_conflicts_and_keeps_content(store: ArtifactStore) -> None:
    stale = store.put_bytes("manifest.json", b"v1")
    current = store.put_bytes("manifest.json", b"v2")
    with pytest.raises(ConflictError):
        store.put_if("manifest.json", b"v3", stale)
    assert store.get_with_etag("manifest.json") == (b"v2", current)


def test_put_if_expected_etag_on_missing_key_conflicts(store: ArtifactStore) -> None:
    etag = store.put_bytes("elsewhere", b"v1")
    with pytest.raises(ConflictError):
        store.put_if("manifest.json", b"v2", etag)
    assert store.head_etag("manifest.json") is None


def test_concurrent_put_if_exactly_one_wins(store: ArtifactStore) -> None:
    base = store.put_bytes("manifest.json", b"base")
    barrier = threading.Barrier(8)
    wins: list[tuple[int, str]] = []
    losses: list[int] = []
    other: list[BaseException] = []

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            wins.append((i, store.put_if("manifest.json", f"writer-{i}".encode(), base)))
        except ConflictError:
            losses.append(i)
        except BaseException as exc:  # pragma: no cover - surfaced by the assertion below
            other.append(exc)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other == []
    assert len(wins) == 1 and len(losses) == 7
    winner, etag = wins[0]
    assert store.get_with_etag("manifest.json") == (f"writer-{winner}".encode(), etag)


def test_upload_download_file(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    payload = os.urandom(1_500_000)
    src.write_bytes(payload)
    store.upload_file("snapshots/i1/shard.tar", src)
    assert store.get_bytes("snapshots/i1/shard.tar") == payload

    dest = tmp_path / "deep" / "dir" / "shard.tar"
    store.download_file("snapshots/i1/shard.tar", dest)
    assert dest.read_bytes() == payload
    # Overwrites an existing file and leaves no temporary files behind.
    store.put_bytes("snapshots/i1/shard.tar", b"small")
    store.download_file("snapshots/i1/shard.tar", dest)
    assert dest.read_bytes() == b"small"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["shard.tar"]


def test_list_keys_by_prefix(store: ArtifactStore) -> None:
    expected = sorted(f"runs/a/{i:03d}.json" for i in range(30))
    for key in expected:
        store.put_bytes(key, b"{}")
    for key in ("runs/ab/x.json", "runs/b/y.json", "other/z.json"):
        store.put_bytes(key, b"{}")
    assert store.list_keys("runs/a/") == expected
    assert store.list_keys("runs/a") == [*expected, "runs/ab/x.json"]
    assert store.list_keys("missing/") == []
    assert len(store.list_keys("")) == 33


def test_delete_prefix_counts(store: ArtifactStore) -> None:
    for i in range(30):
        store.put_bytes(f"index/v1/{i}", b"x")
    store.put_bytes("index/v2/0", b"keep")
    assert store.delete_prefix("index/v1/") == 30
    assert store.list_keys("index/v1/") == []
    assert store.list_keys("index/") == ["index/v2/0"]
    assert store.delete_prefix("index/v1/") == 0


# ---- S3-only: error mapping -------------------------------------------------------------------------------


def test_s3_other_errors_are_upstream(s3_client: Any, unique: str) -> None:
    gone = S3ArtifactStore(s3_client, f"rag-missing-{unique}")
    with pytest.raises(UpstreamError) as info:
        gone.get_bytes("k")
    assert info.value.__cause__ is not None
    with pytest.raises(UpstreamError):
        gone.put_bytes("k", b"x")
    with pytest.raises(UpstreamError):
        gone.list_keys("")
