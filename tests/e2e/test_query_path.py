"""Issue 2 end to end: ingest a tiny corpus, ask over HTTP, vote, check DynamoDB, dedupe, every error path.
The session's stack is shared with the tune loop, which swaps the live pair: a test compares answers with the
pair the manifest names when it runs, never with a version it assumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import boto3
import pytest

from rag_autotune.domain import VersionPair
from rag_autotune.paths import REPO
from rag_autotune.versions import read_manifest, stored_mode
from tests.http_client import call


def live_pair(stack: SimpleNamespace) -> VersionPair:
    found = read_manifest(stack.rt.store)
    assert found is not None, "the session stack has a live pair"
    return found[0].live


def test_bootstrap_uploaded_v0_with_parity(stack: SimpleNamespace) -> None:
    keys = stack.rt.store.list_keys("models/v0/")
    assert {k.rsplit("/", 1)[1] for k in keys} >= {"model.onnx", "tokenizer.json", "meta.json"}
    meta = json.loads(stack.rt.store.get_bytes("models/v0/meta.json"))
    assert meta["parity"]["mean_cosine"] >= 0.98
    assert 0.0 <= meta["parity"]["top5_overlap"] <= 1.0


def test_health_names_the_live_pair(stack: SimpleNamespace) -> None:
    live = live_pair(stack)
    r = call(stack.url + "/health")
    assert r.status == 200
    assert r.json["status"] == "ok"
    assert (r.json["model_version"], r.json["index_version"]) == (live.model_version, live.index_version)
    assert r.json["index_version"].startswith(live.model_version + "-c") and r.json["documents"] == 40


def test_ask_vote_dynamodb_item_and_dedupe(stack: SimpleNamespace) -> None:
    r = call(stack.url + "/ask", "POST", {"query": "create a pipe for interprocess communication", "top_k": 3})
    assert r.status == 200, r.text
    body = r.json
    live = live_pair(stack)
    assert (body["model_version"], body["index_version"]) == (live.model_version, live.index_version)
    assert len(body["citations"]) == 3
    assert [c["rank"] for c in body["citations"]] == [1, 2, 3]
    assert len({c["doc_id"] for c in body["citations"]}) == 3
    scores = [c["score"] for c in body["citations"]]
    assert scores == sorted(scores, reverse=True)
    assert set(body["timings_ms"]) == {"encode", "search", "rerank", "generate", "total"}
    assert body["rerank"] == {"status": "off", "model": None, "reason": None}  # no RAG_RERANK_MODEL_ARN: off
    assert body["timings_ms"]["rerank"] == 0 and {c["rerank_score"] for c in body["citations"]} == {None}
    assert body["retrieval_mode"] == stored_mode(stack.rt.store, live.index_version)[0]  # the version's mode
    assert "[1]" in body["answer"]
    doc = body["citations"][1]["doc_id"]

    vote = {"query_id": body["query_id"], "doc_id": doc, "vote": "up", "comment": "spot on"}
    first = call(stack.url + "/feedback", "POST", vote)
    assert (first.status, first.json) == (201, {"status": "recorded"})
    again = call(stack.url + "/feedback", "POST", vote)
    assert (again.status, again.json) == (200, {"status": "duplicate"})
    other_user = call(stack.url + "/feedback", "POST", {**vote, "user_id": "alice"})
    assert other_user.status == 201

    inner_id = stack.app.runtime.query_tokens.read(body["query_id"]).query_id  # votes name the query by it
    ddb = boto3.client("dynamodb", region_name=stack.settings.region)
    items = ddb.query(
        TableName=stack.settings.table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :v)",
        ExpressionAttributeValues={":pk": {"S": f"Q#{inner_id}"}, ":v": {"S": "V#"}},
    )["Items"]
    assert len(items) == 2
    item = items[0]
    assert item["query"]["S"] == "create a pipe for interprocess communication"
    assert item["doc_id"]["S"] == doc and item["vote"]["S"] == "up" and item["rank"]["N"] == "2"
    assert item["model_version"]["S"] == live.model_version and item["index_version"]["S"] == live.index_version
    assert float(item["created_at"]["N"]) > 1.7e9


@pytest.mark.parametrize(
    ("path", "payload", "status", "code"),
    [
        ("/ask", b"{not json", 400, "invalid_json"),
        ("/ask", b"", 400, "invalid_json"),
        ("/ask", b"[1, 2]", 422, "invalid_input"),
        ("/ask", json.dumps({"query": ""}).encode(), 422, "invalid_input"),
        ("/ask", json.dumps({"query": "x" * 2001}).encode(), 422, "invalid_input"),
        ("/ask", json.dumps({"query": "ok", "top_k": 21}).encode(), 422, "invalid_input"),
        ("/ask", json.dumps({"query": "ok", "top_k": "5"}).encode(), 422, "invalid_input"),
        ("/ask", json.dumps({"query": "ok", "stream": "yes"}).encode(), 422, "invalid_input"),
        ("/ask", json.dumps({"query": "ok", "extra": 1}).encode(), 422, "invalid_input"),
        ("/ask", json.dumps({"top_k": 3}).encode(), 422, "invalid_input"),
        ("/feedback", json.dumps({"query_id": "nope", "doc_id": "x", "vote": "up"}).encode(), 404, "unknown_query"),
        ("/feedback", json.dumps({"query_id": "q", "doc_id": "x", "vote": "maybe"}).encode(), 422, "invalid_input"),
        (
            "/feedback",
            json.dumps({"query_id": "q", "doc_id": "x", "vote": "up", "comment": "c" * 1001}).encode(),
            422,
            "invalid_input",
        ),
        ("/feedback", b"\xff\xfe", 400, "invalid_json"),
    ],
)
def test_bad_input_is_a_clear_4xx_json_error(
    stack: SimpleNamespace, path: str, payload: bytes, status: int, code: str
) -> None:
    r = call(stack.url + path, "POST", raw=payload)
    assert r.status == status, r.text
    assert r.json["error"]["code"] == code and r.json["error"]["message"]


@pytest.mark.parametrize("query", ["what is the", "?!… ,,,"])
def test_a_question_of_stop_words_or_punctuation_is_answered_from_the_dense_side(
    stack: SimpleNamespace, query: str
) -> None:
    r = call(stack.url + "/ask", "POST", {"query": query, "top_k": 2})
    assert r.status == 200, r.text
    assert r.json["retrieval_mode"] == "dense" and len(r.json["citations"]) == 2


def test_vote_on_a_document_that_was_not_cited_is_422(stack: SimpleNamespace) -> None:
    asked = call(stack.url + "/ask", "POST", {"query": "memory allocation", "top_k": 1}).json
    r = call(stack.url + "/feedback", "POST", {"query_id": asked["query_id"], "doc_id": "not-shown.9", "vote": "down"})
    assert r.status == 422 and r.json["error"]["code"] == "doc_not_cited"


def test_wrong_method_and_unknown_content_type_stay_json(stack: SimpleNamespace) -> None:
    r = call(stack.url + "/ask", "GET")
    assert r.status == 405 and "error" in r.json
    r = call(stack.url + "/ask", "POST", {"query": "signals"}, headers={"Content-Type": "text/plain"})
    assert r.status == 200  # the body is JSON whatever the header says


def test_streaming_sse_order(stack: SimpleNamespace) -> None:
    r = call(stack.url + "/ask", "POST", {"query": "how to wait for a child process", "stream": True})
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in r.text.strip().split("\n\n")]
    names = [e[0].removeprefix("event: ") for e in events]
    assert names[0] == "citations" and names[-1] == "done" and set(names[1:-1]) == {"delta"}
    payloads = [json.loads(e[1].removeprefix("data: ")) for e in events]
    assert payloads[-1]["query_id"] == payloads[0]["query_id"]
    r2 = call(stack.url + "/ask", "POST", {"query": "signals"}, headers={"Accept": "text/event-stream"})
    assert r2.text.startswith("event: citations")
    vote = {"query_id": payloads[0]["query_id"], "doc_id": payloads[0]["citations"][0]["doc_id"], "vote": "down"}
    assert call(stack.url + "/feedback", "POST", vote).status == 201


def test_openapi_served_equals_checked_in(stack: SimpleNamespace) -> None:
    served = call(stack.url + "/openapi.json").json
    checked_in = json.loads((REPO / "functions" / "api" / "openapi.json").read_text())
    assert served == checked_in
    assert {"/ask", "/feedback", "/health"} <= set(served["paths"])


def test_serving_process_never_imports_torch(stack: SimpleNamespace) -> None:
    """A fresh process (like a Lambda cold start) serves an /ask through the handler; torch stays unloaded."""
    event = json.loads((REPO / "tests" / "events" / "ask.json").read_text())
    script = (
        "import json, sys\n"
        "from rag_autotune.local.server import load_api_module\n"
        "app = load_api_module().app\n"
        f"resp = app(json.loads({json.dumps(json.dumps(event))}), None)\n"
        "print(json.dumps({'status': resp['statusCode'], 'body': json.loads(resp['body']),\n"
        "  'heavy': sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "                  ('torch', 'transformers', 'sentence_transformers', 'optimum'))}))\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'layers' / 'serve' / 'python'}:{REPO}"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 200 and result["body"]["citations"]
    assert result["heavy"] == []


def test_health_is_503_before_anything_is_live(moto_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rag_autotune import http_api
    from rag_autotune.local.resources import ensure_resources
    from rag_autotune.runtime import Runtime
    from rag_autotune.settings import Settings

    settings = Settings(bucket="empty-bucket-503", table="empty-table-503", cache_dir=tmp_path)
    ensure_resources(settings)
    r = http_api.health(Runtime(settings))
    assert r.status == 503 and json.loads(r.body)["error"]["code"] == "not_ready"


def test_a_truncated_model_in_the_manifest_is_refused_and_health_says_degraded(stack: SimpleNamespace) -> None:
    """A damaged model made live by mistake: the API keeps answering from the last good pair, logs it, and
    /health says degraded with the reason; rolling back clears it."""
    from rag_autotune.versions import MANIFEST_KEY, rollback, swap

    store = stack.rt.store
    original, _ = store.get_with_etag(MANIFEST_KEY)
    manifest, etag = read_manifest(store)  # type: ignore[misc]
    good = manifest.live
    for name in ("tokenizer.json", "meta.json"):
        store.put_bytes(f"models/v90/{name}", store.get_bytes(f"models/{good.model_version}/{name}"))
    onnx = store.get_bytes(f"models/{good.model_version}/model.onnx")
    store.put_bytes("models/v90/model.onnx", onnx[: len(onnx) // 3])  # a torn upload
    swap(store, VersionPair("v90", good.index_version), expected_etag=etag, reason="test", documents=40, chunks=1)
    try:
        health = call(stack.url + "/health").json
        assert health["status"] == "degraded" and health["model_version"] == good.model_version
        assert "v90" in health["reason"]
        asked = call(stack.url + "/ask", "POST", {"query": "create a pipe"})
        assert asked.status == 200 and asked.json["model_version"] == good.model_version
    finally:
        rollback(store)
    assert call(stack.url + "/health").json["status"] == "ok"
    # leave the session's stack as it was: the manifest's history too, and no model the next run would count
    store.put_if(MANIFEST_KEY, original, read_manifest(store)[1])  # type: ignore[index]
    store.delete_prefix("models/v90/")
