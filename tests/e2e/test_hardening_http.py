"""Issue 5 over HTTP, on the embedded default (the served Chalice app, moto as AWS): the API key set and unset,
413, 429 with Retry-After, and DynamoDB throttling answered 503 with Retry-After. The session's app is built
once, so a test that needs another configuration swaps the app module's `guard` for its own (what
RAG_AUTOTUNE_API_KEY / RAG_FEEDBACK_RATE_PER_S would build at start) and restores it afterwards. Votes go to a
table of this module's own, so the session's table (the tune loop counts its votes) stays as it was."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import boto3
import pytest

from rag_autotune import http_api
from rag_autotune.adapters.dynamodb import DynamoFeedbackStore
from rag_autotune.auth import ApiKeyCheck
from rag_autotune.local.resources import ensure_table, load_template, table_spec
from rag_autotune.observability import logger
from rag_autotune.ratelimit import TokenBucket
from tests.botocore_faults import Inject
from tests.http_client import Reply, call

KEY = "e2e-api-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def own_table(stack: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> str:
    """The served app logs queries and votes in a fresh table (same schema, same client) for each test."""
    served = stack.app.runtime.feedback
    table = f"e2e-hardening-{uuid.uuid4().hex[:8]}"
    ensure_table(served._ddb, table, table_spec(load_template()))
    monkeypatch.setattr(stack.app.runtime, "feedback", DynamoFeedbackStore(served._ddb, table))
    return table


def guarded(stack: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, **changes: object) -> http_api.Guard:
    base = http_api.Guard.from_settings(stack.settings)
    fields = {"api_key": base.api_key, "max_body_bytes": base.max_body_bytes, "feedback_limit": None, **changes}
    guard = http_api.Guard(**fields)  # type: ignore[arg-type]
    monkeypatch.setattr(stack.app, "guard", guard)
    return guard


def json_error(r: Reply, status: int, code: str) -> None:
    assert r.status == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json["error"]["code"] == code and r.json["error"]["message"]


def ask(stack: SimpleNamespace, query: str = "create a pipe", **headers: str) -> dict:  # type: ignore[type-arg]
    r = call(stack.url + "/ask", "POST", {"query": query, "top_k": 2}, headers=headers)
    assert r.status == 200, r.text
    return r.json  # type: ignore[no-any-return]


@pytest.fixture
def all_logs() -> Iterator[list[str]]:
    """Everything logged in the process while the test runs (the app's logger and every other one), at DEBUG."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record) + repr(record.__dict__))

    handler = Keep(level=logging.DEBUG)
    handler.setFormatter(logger.registered_formatter)
    targets = [logging.getLogger(), logging.getLogger(logger.name)]
    for t in targets:
        t.addHandler(handler)
    level = logger.log_level
    logger.setLevel("DEBUG")
    yield lines
    logger.setLevel(level)
    for t in targets:
        t.removeHandler(handler)


def test_no_key_configured_is_open(stack: SimpleNamespace) -> None:
    assert stack.settings.api_key is None and not stack.app.guard.api_key.required
    body = ask(stack)
    vote = {"query_id": body["query_id"], "doc_id": body["citations"][0]["doc_id"], "vote": "up"}
    assert call(stack.url + "/feedback", "POST", vote).status == 201


def test_with_a_key_ask_and_feedback_need_it_health_stays_open(
    stack: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, all_logs: list[str]
) -> None:
    guarded(stack, monkeypatch, api_key=ApiKeyCheck(KEY))
    json_error(call(stack.url + "/ask", "POST", {"query": "pipe"}), 401, "missing_api_key")
    json_error(
        call(stack.url + "/ask", "POST", {"query": "pipe"}, headers={"x-api-key": "nope"}), 403, "invalid_api_key"
    )
    json_error(
        call(stack.url + "/feedback", "POST", {"query_id": "q", "doc_id": "d", "vote": "up"}), 401, "missing_api_key"
    )
    body = ask(stack, "a private question about pipes", **{"X-Api-Key": KEY})  # header names are case-insensitive
    vote = {"query_id": body["query_id"], "doc_id": body["citations"][0]["doc_id"], "vote": "down"}
    json_error(call(stack.url + "/feedback", "POST", vote, headers={"x-api-key": KEY + "x"}), 403, "invalid_api_key")
    assert call(stack.url + "/feedback", "POST", vote, headers={"x-api-key": KEY}).status == 201
    assert call(stack.url + "/health").status == 200
    assert call(stack.url + "/openapi.json").status == 200
    assert all_logs, "the requests above were logged"
    assert not [line for line in all_logs if KEY in line]


def test_oversized_body_is_413_json(stack: SimpleNamespace) -> None:
    big = json.dumps({"query": "pipe", "pad": "x" * (stack.settings.max_body_bytes + 1)}).encode()
    json_error(call(stack.url + "/ask", "POST", raw=big), 413, "payload_too_large")
    json_error(call(stack.url + "/feedback", "POST", raw=big), 413, "payload_too_large")


def test_feedback_flood_is_429_with_retry_after(stack: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    # A clock that stands still: however slow the machine, no token comes back during the test.
    guarded(stack, monkeypatch, feedback_limit=TokenBucket(rate_per_s=0.2, burst=2, clock=lambda: 0.0))
    body = ask(stack, "wait for a child process")
    votes = [{"query_id": body["query_id"], "doc_id": c["doc_id"], "vote": "up"} for c in body["citations"]]
    assert [call(stack.url + "/feedback", "POST", v).status for v in votes] == [201, 201]
    r = call(stack.url + "/feedback", "POST", {**votes[0], "vote": "down"})
    json_error(r, 429, "rate_limited")
    assert r.headers["retry-after"] == "5"  # one token at 0.2/s
    assert call(stack.url + "/ask", "POST", {"query": "signals"}).status == 200  # /ask is not in the bucket


def test_dynamodb_throttling_on_feedback_is_503_never_a_silent_drop(stack: SimpleNamespace, own_table: str) -> None:
    body = ask(stack, "map files into memory")
    vote = {"query_id": body["query_id"], "doc_id": body["citations"][0]["doc_id"], "vote": "up"}
    client = stack.app.runtime.feedback._ddb  # the served app's own client: its retry config is the real one
    with Inject(client, "TransactWriteItems", "ProvisionedThroughputExceededException", times=100) as inj:
        r = call(stack.url + "/feedback", "POST", vote)
    json_error(r, 503, "throttled")
    assert int(r.headers["retry-after"]) >= 1 and inj.calls == 3  # botocore tried three times first
    ddb = boto3.client("dynamodb", region_name=stack.settings.region)
    inner_id = stack.app.runtime.query_tokens.read(body["query_id"]).query_id  # votes name the query by it

    def votes_stored() -> int:
        return len(
            ddb.query(
                TableName=own_table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :v)",
                ExpressionAttributeValues={":pk": {"S": f"Q#{inner_id}"}, ":v": {"S": "V#"}},
            )["Items"]
        )

    assert votes_stored() == 0
    assert call(stack.url + "/feedback", "POST", vote).status == 201  # the client's retry lands, once
    assert votes_stored() == 1
