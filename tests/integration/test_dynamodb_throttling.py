"""Issue 5, fault injection: DynamoDB throttling on /feedback. The real adapter talks to moto's server; only the
throttling answer is injected, as botocore's own HTTP response (a `before-send` hook), so botocore's standard
retry mode sees a real throttling error, retries it, and then the adapter raises Throttled: HTTP 503 with
Retry-After and a JSON error. Nothing is written, and nothing is silently dropped."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from rag_autotune import http_api
from rag_autotune.adapters.aws import CLIENT_CONFIG
from rag_autotune.adapters.dynamodb import DynamoFeedbackStore
from rag_autotune.domain import Citation, QueryLog, VersionPair, Vote
from rag_autotune.errors import Throttled, UpstreamError
from rag_autotune.local.resources import ensure_table, load_template, table_spec
from rag_autotune.runtime import Runtime
from rag_autotune.settings import Settings
from tests.botocore_faults import Inject
from tests.fakes import TOKENS

PAIR = VersionPair("v0", "v0-c1")
CITED = Citation("pipe.2", "pipe.2#0", "pipe(2)", "pipe creates a pipe", 0.9, 1)


@pytest.fixture(scope="module")
def client(moto_url: str) -> Any:
    """Its own client (same config as the app's), so the retry quota and hooks are this module's alone."""
    return boto3.session.Session().client(
        "dynamodb", region_name="us-east-1", endpoint_url=moto_url, config=CLIENT_CONFIG
    )


@pytest.fixture
def store(client: Any, unique: str) -> DynamoFeedbackStore:
    table = f"rag-throttle-{unique}"
    ensure_table(client, table, table_spec(load_template()))
    return DynamoFeedbackStore(client, table)


def vote(at: float | None = None) -> Vote:
    return Vote("q1", "pipe.2", "pipe.2#0", "up", 1, "how do I create a pipe", PAIR, at or time.time())


def test_botocore_retries_throttling_then_the_vote_lands(store: DynamoFeedbackStore, client: Any) -> None:
    with Inject(client, "TransactWriteItems", "ProvisionedThroughputExceededException", times=2) as inj:
        assert store.record_vote(vote(), "k-retry", 3600) is True
    assert inj.calls == 3  # two throttled attempts, botocore retried, the third reached moto
    assert len(store.votes()) == 1


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_still_throttled_after_retries_is_throttled_and_nothing_written(
    store: DynamoFeedbackStore, client: Any, code: str
) -> None:
    with Inject(client, "TransactWriteItems", code, times=100) as inj, pytest.raises(Throttled) as info:
        store.record_vote(vote(), "k-throttled", 3600)
    assert inj.calls == CLIENT_CONFIG.retries["total_max_attempts"]  # every attempt botocore allows, no more
    assert isinstance(info.value, UpstreamError) and info.value.retry_after_s >= 1
    assert store.votes() == []
    # once DynamoDB recovers, the same vote is recorded: the failed attempts left no dedupe marker behind
    assert store.record_vote(vote(), "k-throttled", 3600) is True


def test_throttling_inside_the_transaction_is_retried_by_us(store: DynamoFeedbackStore, client: Any) -> None:
    """TransactionCanceledException with a ThrottlingError reason: botocore does not retry it; the adapter does."""
    reasons = {"CancellationReasons": [{"Code": "ThrottlingError"}, {"Code": "None"}]}
    with Inject(client, "TransactWriteItems", "TransactionCanceledException", times=2, **reasons) as inj:
        assert store.record_vote(vote(), "k-cancel", 3600) is True
    assert inj.calls == 3
    with (
        Inject(client, "TransactWriteItems", "TransactionCanceledException", times=100, **reasons),
        pytest.raises(Throttled),
    ):
        store.record_vote(vote(), "k-cancel-2", 3600)
    assert len(store.votes()) == 1


def test_feedback_answers_503_with_retry_after(store: DynamoFeedbackStore, client: Any, tmp_path: Any) -> None:
    rt = Runtime(Settings(cache_dir=tmp_path))
    rt.feedback = store  # type: ignore[misc]
    rt.query_tokens = TOKENS  # type: ignore[misc]
    guard = http_api.Guard.from_settings(rt.settings)
    shown = TOKENS.issue(QueryLog("q1", "how do I create a pipe", PAIR, (CITED,), time.time(), "anonymous"))
    body = json.dumps({"query_id": shown, "doc_id": "pipe.2", "vote": "down"}).encode()
    request = http_api.HttpRequest(body, {}, "203.0.113.5")
    with Inject(client, "TransactWriteItems", "ProvisionedThroughputExceededException", times=100):
        r = http_api.feedback(rt, request, guard)
    assert r.status == 503 and int(r.headers["Retry-After"]) >= 1
    assert json.loads(r.body)["error"]["code"] == "throttled"
    assert store.votes() == []
    assert http_api.feedback(rt, request, guard).status == 201  # the client's retry is recorded
    assert [v.vote for v in store.votes()] == ["down"]
