"""Issue 13.3 on moto's Step Functions: a large ingest fans out through infra/ingest.asl.json as deployed from
template.yaml (the tune's EmbedShards Map, the real Assemble and Cleanup handlers, each in its own process),
into the real S3 store and the Qdrant Edge index. Only the embed function is a stand-in (ingest_handlers.py:
the real map item with the fakes' HashEncoder, so no model is exported)."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest

from rag_autotune.adapters.qdrant_edge import EdgeVectorIndex
from rag_autotune.adapters.s3 import S3ArtifactStore
from rag_autotune.adapters.stepfunctions import StepFunctionsWorkflows
from rag_autotune.chunking import embed_hash, embed_text
from rag_autotune.domain import Document
from rag_autotune.errors import IngestError
from rag_autotune.ingest import Change, apply_change
from rag_autotune.ingest_fanout import FanoutRunner
from rag_autotune.local import sfn
from rag_autotune.paths import INGEST_ASL, TEMPLATE
from rag_autotune.settings import Settings
from rag_autotune.versions import read_manifest
from tests.fakes import HashEncoder

HANDLERS = "tests/integration/ingest_handlers.py"
SHARD = 3  # chunks per map item: every ingest below has several


def doc(i: int) -> Document:
    text = "\n\n".join(f"Document {i} paragraph {p} is about topic {i * 7 + p}, at some length." for p in range(4))
    return Document(f"doc{i}", f"Title {i}", text)


@pytest.fixture
def world(moto_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:  # type: ignore[type-arg]
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "lambdas"))  # the handlers' caches: this test's own
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(bucket=f"rag-ingest-{suffix}", table=f"rag-ingest-{suffix}")
    s3 = boto3.client("s3", region_name=settings.region)
    s3.create_bucket(Bucket=settings.bucket)
    store = S3ArtifactStore(s3, settings.bucket)
    store.put_bytes("models/v0/meta.json", b"{}")
    index = EdgeVectorIndex(store, tmp_path / "shards")
    apply_change(Change([doc(0)]), store=store, index=index, load_encoder=HashEncoder, chunk_chars=200)
    return {"settings": settings, "store": store, "index": index, "name": f"rag-ingest-{suffix}"}


def _ingest(world: dict, embed: str) -> object:  # type: ignore[type-arg]
    settings = world["settings"]
    arn = sfn.deploy(settings, TEMPLATE, INGEST_ASL, {"TuneEmbedFunction": f"{HANDLERS}:{embed}"}, name=world["name"])
    client = boto3.client("stepfunctions", region_name=settings.region)
    runner = FanoutRunner(StepFunctionsWorkflows(client, arn), world["store"], size=SHARD, above=SHARD, poll_s=0.2)
    change = Change([doc(i) for i in range(1, 6)])
    return apply_change(
        change, store=world["store"], index=world["index"], load_encoder=HashEncoder, chunk_chars=200, fan_out=runner
    )


def test_a_large_ingest_runs_through_the_ingest_state_machine(world: dict) -> None:  # type: ignore[type-arg]
    store, index = world["store"], world["index"]
    before = read_manifest(store)
    report = _ingest(world, "embed")
    assert report.embedded > 2 * SHARD and report.reused > 0  # several map items; doc0's vectors reused
    current = read_manifest(store)
    assert current is not None and before is not None and current[1] != before[1]
    assert current[0].live.index_version == report.index_version
    chunks = list(index.chunks(report.index_version))
    assert [c.doc_id for c in chunks][: report.reused] == ["doc0"] * report.reused  # the merge's order
    got = index.vectors(report.index_version, {embed_hash(c) for c in chunks})
    expected = HashEncoder("v0").encode([embed_text(c) for c in chunks])
    # stored at half precision: the same vector to about three significant digits
    assert all(abs(float(got[embed_hash(c)] @ row) - 1.0) < 1e-3 for c, row in zip(chunks, expected, strict=True))
    assert store.list_keys("jobs/") == []


def test_a_map_item_that_keeps_failing_changes_nothing_and_leaves_no_files(world: dict) -> None:  # type: ignore[type-arg]
    store, index = world["store"], world["index"]
    before, versions, claims = read_manifest(store), index.versions(), store.list_keys("corpus/")
    with pytest.raises(IngestError, match="map item 1 failed: UpstreamError: shard 1 cannot reach S3; nothing changed"):
        _ingest(world, "embed_failing_shard_1")
    assert read_manifest(store) == before
    assert index.versions() == versions
    assert store.list_keys("jobs/") == []
    assert store.list_keys("corpus/") == claims
