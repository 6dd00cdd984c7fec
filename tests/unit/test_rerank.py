"""Optional reranking (issue 14.4): the Rerank request checked with botocore's Stubber, throttling and timeouts
falling back to the unreranked order with the reason, and what /ask reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError
from botocore.stub import Stubber
from pydantic import ValidationError

from rag_autotune import http_api
from rag_autotune.adapters.bedrock_rerank import BedrockReranker, complete_order, region_of, rerank_config
from rag_autotune.ask import ask
from rag_autotune.domain import Chunk, Hit, RerankReport
from rag_autotune.errors import RerankUnavailable
from rag_autotune.generate import ExtractiveGenerator
from rag_autotune.ingest import ingest
from rag_autotune.observability import metrics
from rag_autotune.reranking import IdentityReranker, RerankStep
from rag_autotune.runtime import Runtime
from rag_autotune.settings import Settings
from tests.fakes import fake_runtime
from tests.rerank_service import MODEL_ARN, RerankService, rerank_client

DOCS = ["pipe(2)\npipe creates a pipe", "open(2)\nopen a file"]


@pytest.fixture
def client() -> Any:
    return rerank_client(rerank_config(0.5))


def expected_request(query: str, docs: Sequence[str]) -> dict[str, Any]:
    return {
        "queries": [{"type": "TEXT", "textQuery": {"text": query}}],
        "sources": [
            {"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": d}}} for d in docs
        ],
        "rerankingConfiguration": {
            "type": "BEDROCK_RERANKING_MODEL",
            "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": MODEL_ARN}, "numberOfResults": 2},
        },
    }


def test_rerank_request_and_answer(client: Any) -> None:
    response = {"results": [{"index": 1, "relevanceScore": 0.9}, {"index": 0, "relevanceScore": 0.2}]}
    with Stubber(client) as stub:
        stub.add_response("rerank", response, expected_request("open a file", DOCS))
        assert BedrockReranker(client, MODEL_ARN).rerank("open a file", DOCS) == [(1, 0.9), (0, 0.2)]
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        ("ThrottlingException", 429, "throttled"),
        ("ServiceQuotaExceededException", 400, "throttled"),
        ("AccessDeniedException", 403, "unavailable"),
        ("ValidationException", 400, "unavailable"),
        ("ResourceNotFoundException", 404, "unavailable"),
    ],
)
def test_service_errors_say_why(client: Any, code: str, status: int, reason: str) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("rerank", code, "no", status)
        with pytest.raises(RerankUnavailable) as caught:
            BedrockReranker(client, MODEL_ARN).rerank("q", DOCS)
    assert caught.value.reason == reason


class Timeout:
    """A client whose call times out on the wire, after botocore built and signed the request; counts attempts."""

    def __init__(self, client: Any, error: type[Exception]) -> None:
        self.client, self.error, self.calls = client, error, 0

    def __call__(self, request: Any, **_: Any) -> None:
        self.calls += 1
        raise self.error(endpoint_url=request.url)

    def __enter__(self) -> Timeout:
        self.client.meta.events.register_first("before-send.bedrock-agent-runtime.Rerank", self, unique_id="t")
        return self

    def __exit__(self, *_: object) -> None:
        self.client.meta.events.unregister("before-send.bedrock-agent-runtime.Rerank", unique_id="t")


@pytest.mark.parametrize("error", [ReadTimeoutError, ConnectTimeoutError])
def test_a_timeout_is_one_attempt_and_reported(client: Any, error: type[Exception]) -> None:
    with Timeout(client, error) as timeout, pytest.raises(RerankUnavailable) as caught:
        BedrockReranker(client, MODEL_ARN).rerank("q", DOCS)
    assert caught.value.reason == "timeout"
    assert timeout.calls == 1  # no retries: a slow reranker is skipped, not asked again


def test_the_client_config_is_one_attempt_with_short_timeouts() -> None:
    config = rerank_config(1.5)
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert (config.read_timeout, config.connect_timeout) == (1.5, 1.0)


def test_complete_order_makes_any_answer_a_permutation() -> None:
    results = [{"index": 2, "relevanceScore": 0.5}, {"index": 2, "relevanceScore": 0.9}, {"index": 7}]
    results += [{"index": 0, "relevanceScore": 0.8}]
    assert complete_order(results, 4) == [(0, 0.8), (2, 0.5), (1, 0.5), (3, 0.5)]
    assert complete_order([], 2) == [(0, 0.0), (1, 0.0)]


def _ranked(*docs: str) -> list[tuple[Hit, float]]:
    return [(Hit(Chunk(f"{d}#0", d, d, f"text of {d}"), 1.0 - i / 10), 1.0 - i / 10) for i, d in enumerate(docs)]


class Reverse:
    model = "reverse"

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def rerank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        self.seen.append(list(documents))
        return [(i, float(i)) for i in reversed(range(len(documents)))]


class Failing:
    model = "failing"

    def rerank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        raise RerankUnavailable("Bedrock rerank failed: slow down", "throttled")


def test_applied_reorders_the_first_top_n_and_keeps_the_rest() -> None:
    ticks = iter([10.0, 10.25])
    reverse = Reverse()
    out = RerankStep(reverse, top_n=3, clock=lambda: next(ticks)).apply("q", _ranked("a", "b", "c", "d"))
    assert [h.chunk.doc_id for h, _ in out.ranked] == ["c", "b", "a", "d"]
    assert reverse.seen == [["a\ntext of a", "b\ntext of b", "c\ntext of c"]]  # title + text, as the index embeds
    assert out.scores == {"a": 0.0, "b": 1.0, "c": 2.0}
    assert out.report == RerankReport("applied", "reverse") and out.ms == 250.0


def test_skipped_keeps_the_order_and_logs_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    ranked = _ranked("a", "b", "c")
    out = RerankStep(Failing(), top_n=3).apply("q", ranked)
    assert out.ranked == ranked and out.scores == {}
    assert out.report == RerankReport("skipped", "failing", "throttled")
    (record,) = [r for r in caplog.records if r.getMessage() == "rerank skipped"]
    assert record.levelname == "WARNING"
    assert record.reason == "throttled" and "slow down" in record.error  # type: ignore[attr-defined]


def test_a_throttle_or_timeout_pauses_the_model_and_other_errors_do_not() -> None:
    class Flaky:
        model = "flaky"

        def __init__(self) -> None:
            self.calls, self.reasons = 0, ["throttled", "unavailable"]

        def rerank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
            self.calls += 1
            if self.reasons:
                raise RerankUnavailable("no", self.reasons.pop(0))
            return [(i, 1.0) for i in range(len(documents))]

    now = [100.0]
    flaky = Flaky()
    step = RerankStep(flaky, top_n=3, clock=lambda: now[0], pause_s=30.0)
    ranked = _ranked("a", "b")
    assert step.apply("q", ranked).report.reason == "throttled"
    now[0] = 129.9
    paused = step.apply("q", ranked)
    assert paused.report == RerankReport("skipped", "flaky", "paused") and paused.ranked == ranked
    assert flaky.calls == 1  # nobody waited on it, nothing was sent
    now[0] = 130.0
    assert step.apply("q", ranked).report.reason == "unavailable" and flaky.calls == 2
    assert step.apply("q", ranked).report.status == "applied" and flaky.calls == 3  # no pause after that one


def test_off_never_calls_the_identity() -> None:
    class Counting(IdentityReranker):
        calls = 0

        def rerank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
            self.calls += 1
            return super().rerank(query, documents)

    counting = Counting()
    ranked = _ranked("a", "b")
    out = RerankStep(counting).apply("q", ranked)
    assert out.ranked == ranked and out.report == RerankReport() and counting.calls == 0


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    """Three documents; the hashing encoder puts pipe.2 first for "how do I create a file", a reranker open.2."""
    rt = fake_runtime(tmp_path, {"id": "pipe.2", "title": "pipe(2)", "text": "pipe creates a pipe."})
    corpus = tmp_path / "all.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps(d)
            for d in [
                {"id": "pipe.2", "title": "pipe(2)", "text": "pipe creates a pipe."},
                {"id": "open.2", "title": "open(2)", "text": "open a file, or create a file"},
                {"id": "fork.2", "title": "fork(2)", "text": "create a child process"},
            ]
        )
    )
    ingest(corpus, store=rt.store, index=rt.index, load_encoder=rt.load_encoder)
    return rt


def _ask(rt: Runtime) -> dict[str, Any]:
    body = json.dumps({"query": "how do I create a file", "top_k": 3}).encode()
    answer = http_api.ask(rt, http_api.HttpRequest(body, {}, "203.0.113.9"), http_api.Guard.from_settings(rt.settings))
    assert answer.status == 200
    return json.loads(answer.body)  # type: ignore[no-any-return]


def test_ask_reports_reranking_off_by_default(rt: Runtime) -> None:
    assert not rt.reranking.active  # no RAG_RERANK_MODEL_ARN: the identity, no client built
    out = _ask(rt)
    assert out["rerank"] == {"status": "off", "model": None, "reason": None}
    assert out["timings_ms"]["rerank"] == 0.0
    assert all(c["rerank_score"] is None for c in out["citations"])


def test_ask_through_bedrock_orders_by_the_model_and_counts_its_latency(
    rt: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = [c["doc_id"] for c in _ask(rt)["citations"]]
    client = rerank_client(rerank_config(0.5))
    rt.reranking = RerankStep(BedrockReranker(client, MODEL_ARN), top_n=3)  # type: ignore[misc]
    metrics.clear_metrics()
    with RerankService(client) as service:
        out = _ask(rt)
    assert len(service.requests) == 1
    scores = [c["rerank_score"] for c in out["citations"]]
    assert None not in scores and scores == sorted(scores, reverse=True)
    assert out["citations"][0]["doc_id"] == "open.2" and sorted(c["doc_id"] for c in out["citations"]) == sorted(plain)
    assert out["rerank"] == {"status": "applied", "model": MODEL_ARN, "reason": None}
    assert out["timings_ms"]["rerank"] > 0
    metrics.flush_metrics()
    assert '"RerankLatency"' in capsys.readouterr().out


def test_ask_when_bedrock_throttles_answers_in_the_unreranked_order(
    rt: Runtime, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    plain = _ask(rt)["citations"]
    client = rerank_client(rerank_config(0.5))
    rt.reranking = RerankStep(BedrockReranker(client, MODEL_ARN), top_n=3)  # type: ignore[misc]
    metrics.clear_metrics()
    with Stubber(client) as stub:
        stub.add_client_error("rerank", "ThrottlingException", "Rate exceeded", 429)
        out = _ask(rt)
    assert [(c["doc_id"], c["score"]) for c in out["citations"]] == [(c["doc_id"], c["score"]) for c in plain]
    assert out["rerank"] == {"status": "skipped", "model": MODEL_ARN, "reason": "throttled"}
    metrics.flush_metrics()
    assert '"RerankSkipped"' in capsys.readouterr().out
    assert [r.reason for r in caplog.records if r.getMessage() == "rerank skipped"] == ["throttled"]  # type: ignore[attr-defined]


def test_ask_with_a_timeout_answers_too(rt: Runtime) -> None:
    client = rerank_client(rerank_config(0.5))
    reranking = RerankStep(BedrockReranker(client, MODEL_ARN), top_n=3)
    with Timeout(client, ReadTimeoutError):
        answer = ask("create a file", 3, rt.live.current(), rt.query_tokens, ExtractiveGenerator(), reranking=reranking)
    assert answer.rerank == RerankReport("skipped", MODEL_ARN, "timeout")
    assert len(answer.citations) == 3 and answer.answer


def test_settings_take_a_foundation_model_arn_and_call_its_region() -> None:
    s = Settings(rerank_model_arn="arn:aws:bedrock:ca-central-1::foundation-model/cohere.rerank-v3-5:0")
    assert region_of(s.rerank_model_arn or "") == "ca-central-1"
    assert (s.rerank_top_n, s.rerank_timeout_s) == (20, 2.0)
    with pytest.raises(ValidationError):
        Settings(rerank_model_arn="amazon.rerank-v1:0")  # a bare id names no region
    with pytest.raises(ValidationError):
        Settings(rerank_top_n=101)  # more than one billed rerank query per question
