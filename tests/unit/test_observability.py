"""EMF metrics from the API path, checked the Powertools way: flushed to stdout and read back with capsys."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rag_autotune import http_api
from rag_autotune.observability import metrics
from rag_autotune.runtime import Runtime
from tests.fakes import fake_runtime


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return fake_runtime(tmp_path, {"id": "pipe.2", "title": "pipe(2)", "text": "pipe creates a pipe."})


def emf_blobs(out: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and "_aws" in line]


def test_ask_and_feedback_emit_emf_metrics(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    metrics.clear_metrics()
    guard = http_api.Guard.from_settings(rt.settings)
    question = json.dumps({"query": "make a pipe"}).encode()
    asked = http_api.ask(rt, http_api.HttpRequest(question, {}, "203.0.113.9"), guard)
    assert asked.status == 200
    query_id = json.loads(asked.body)["query_id"]
    vote = json.dumps({"query_id": query_id, "doc_id": "pipe.2", "vote": "up"}).encode()
    assert http_api.feedback(rt, http_api.HttpRequest(vote, {}, "203.0.113.9"), guard).status == 201
    assert http_api.feedback(rt, http_api.HttpRequest(vote, {}, "203.0.113.9"), guard).status == 200
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


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict]]]:  # type: ignore[type-arg]
    """The JSON log lines Powertools writes (its handler's stream was bound at import, so capture it here)."""
    from rag_autotune.observability import logger

    handler = logger.registered_handler
    buffer = io.StringIO()
    old = handler.setStream(buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    handler.setStream(old)


class FakeContext:
    function_name = "rag-autotune-TuneSmokeFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:rag-autotune-TuneSmokeFunction"
    aws_request_id = "c0ffee00-0000-4000-8000-000000000001"


def test_step_handlers_log_with_context_and_count_cold_starts(
    capsys: pytest.CaptureFixture[str],
    log_lines: Callable[[], list[dict]],  # type: ignore[type-arg]
) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    from rag_autotune import observability

    @observability.step_handler
    def handler(event: dict, context: object) -> dict:  # type: ignore[type-arg]
        metrics.add_metric(name="TuneRejected", unit=MetricUnit.Count, value=1)
        observability.logger.info("step ran")
        return {"status": "REJECTED"}

    metrics.clear_metrics()
    assert handler({"run_id": "r1"}, FakeContext()) == {"status": "REJECTED"}
    out = capsys.readouterr().out
    names = {m["Name"] for b in emf_blobs(out) for d in b["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"TuneRejected", "ColdStart"} <= names
    ran = next(entry for entry in log_lines() if entry["message"] == "step ran")
    assert ran["function_name"] == FakeContext.function_name and ran["cold_start"] is True


def test_api_requests_carry_the_gateway_request_id_and_one_cold_start(
    capsys: pytest.CaptureFixture[str],
    log_lines: Callable[[], list[dict]],  # type: ignore[type-arg]
) -> None:
    from rag_autotune import observability

    observability._cold = True
    metrics.clear_metrics()
    observability.api_request_started("req-1")
    observability.logger.info("answered")
    observability.api_request_started("req-2")  # a warm request: no second cold start
    metrics.flush_metrics()
    out = capsys.readouterr().out
    (blob,) = emf_blobs(out)
    assert blob["ColdStart"] in (1.0, [1.0])
    logged = next(entry for entry in log_lines() if entry["message"] == "answered")
    assert logged["correlation_id"] == "req-1"
