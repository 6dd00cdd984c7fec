"""EMF metrics from the API path, checked the Powertools way: flushed to stdout and read back with capsys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_autotune import http_api
from rag_autotune.ingest import ingest
from rag_autotune.observability import metrics
from rag_autotune.runtime import Runtime
from rag_autotune.settings import Settings
from tests.fakes import HashEncoder, MemoryArtifactStore, MemoryFeedbackStore, MemoryVectorIndex


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    runtime = Runtime(Settings(cache_dir=tmp_path))
    runtime.store = MemoryArtifactStore()  # type: ignore[misc]
    runtime.index = MemoryVectorIndex()  # type: ignore[misc]
    runtime.feedback = MemoryFeedbackStore()  # type: ignore[misc]
    runtime.load_encoder = lambda v: HashEncoder(v)  # type: ignore[method-assign]
    runtime.store.put_bytes("models/v0/meta.json", b"{}")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "pipe.2", "title": "pipe(2)", "text": "pipe creates a pipe."}) + "\n")
    ingest(corpus, store=runtime.store, index=runtime.index, load_encoder=runtime.load_encoder)
    return runtime


def emf_blobs(out: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and "_aws" in line]


def test_ask_and_feedback_emit_emf_metrics(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    metrics.clear_metrics()
    asked = http_api.ask(rt, json.dumps({"query": "make a pipe"}).encode(), None, "203.0.113.9")
    assert asked.status == 200
    query_id = json.loads(asked.body)["query_id"]
    vote = json.dumps({"query_id": query_id, "doc_id": "pipe.2", "vote": "up"}).encode()
    assert http_api.feedback(rt, vote, "203.0.113.9").status == 201
    assert http_api.feedback(rt, vote, "203.0.113.9").status == 200
    metrics.flush_metrics()
    (blob,) = emf_blobs(capsys.readouterr().out)
    names = {m["Name"] for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"AskLatency", "FeedbackRecorded", "FeedbackDuplicate", "VoteUp"} <= names
    one = lambda v: v[0] if isinstance(v, list) else v  # noqa: E731 (EMF values may be lists)
    assert one(blob["AskLatency"]) > 0 and one(blob["FeedbackRecorded"]) == 1.0
    assert one(blob["FeedbackDuplicate"]) == 1.0


def test_client_id_never_stores_the_raw_ip() -> None:
    cid = http_api.client_id("203.0.113.9")
    assert cid.startswith("ip-") and "203" not in cid and cid == http_api.client_id("203.0.113.9")
    assert http_api.client_id(None) == "anonymous"
