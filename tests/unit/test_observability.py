"""EMF metrics from the API path, checked the Powertools way: flushed to stdout and read back with capsys."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rag_autotune import http_api
from rag_autotune.observability import metrics, step_handler
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
    monkeypatch: pytest.MonkeyPatch,
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
    # A fresh process's first invocation: an earlier test may have run a handler in this one.
    monkeypatch.setattr("aws_lambda_powertools.logging.logger.is_cold_start", True)
    monkeypatch.setattr("aws_lambda_powertools.metrics.provider.cold_start.is_cold_start", True)
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


def test_the_cli_starts_with_a_profile_that_does_not_exist(tmp_path: Path) -> None:
    """The tracer needs no AWS configuration at import: `--help` works with AWS_PROFILE naming nothing and a HOME
    without ~/.aws (the X-Ray SDK, Powertools' default provider, builds a boto3 client when imported)."""
    cli = Path(sys.executable).parent / "rag-autotune"
    assert cli.exists(), "the console script is installed with the package (pip install -e .)"
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAMBDA_"))}
    env = keep | {"AWS_PROFILE": "nope", "HOME": str(tmp_path)}
    done = subprocess.run([str(cli), "--help"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: rag-autotune" in done.stdout


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_step_handler_runs_untraced_outside_lambda() -> None:
    @step_handler
    def handler(event: dict[str, object], context: object) -> dict[str, object]:
        return {"seen": event["n"]}

    class Context:
        function_name, memory_limit_in_mb, invoked_function_arn, aws_request_id = "f", 128, "arn:f", "r1"

    assert handler({"n": 1}, Context()) == {"seen": 1}
    with pytest.raises(KeyError):
        handler({}, Context())


def test_api_metrics_are_added_and_flushed_under_one_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local API server runs requests on threads of one process and Powertools keeps one metric set per
    process: a flush racing another request's add answered 500. Every add and flush holds the same lock."""
    from rag_autotune import observability as obs

    held: list[tuple[str, bool]] = []
    monkeypatch.setattr(obs.metrics, "add_metric", lambda **kw: held.append(("add", obs._api_metrics.locked())))
    monkeypatch.setattr(obs.metrics, "flush_metrics", lambda **kw: held.append(("flush", obs._api_metrics.locked())))
    monkeypatch.setattr(type(obs.metrics), "metric_set", property(lambda self: {"AskLatency": 1}), raising=False)
    obs.add_api_metric("AskLatency", obs.MetricUnit.Milliseconds, 1.0)
    obs.flush_api_metrics()
    assert held == [("add", True), ("flush", True)]
