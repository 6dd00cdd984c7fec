"""HTTP translation for the API Lambda, free of any web framework: raw body in, (status, headers, body) out.
functions/api/app.py is a thin Chalice shell around these functions."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ValidationError

from . import ask as ask_logic
from .auth import HEADER as API_KEY_HEADER
from .auth import ApiKeyCheck, key_fingerprint
from .domain import PUBLIC_TENANT, Answer, Citation, RerankReport
from .errors import InvalidInput, InvalidJson, PayloadTooLarge, RagError
from .feedback import record_feedback
from .http_errors import error_body, headers_of, status_of
from .observability import add_api_metric, logger
from .ratelimit import TokenBucket
from .runtime import Runtime
from .schemas import AskRequest, FeedbackRequest
from .settings import Settings

M = TypeVar("M", bound=BaseModel)
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))


@dataclass(frozen=True)
class HttpRequest:
    """What the handlers need of a request: the raw body, the headers (names lower-case) and the caller's IP
    (API Gateway's requestContext.identity.sourceIp)."""

    body: bytes | None
    headers: Mapping[str, str] = field(default_factory=dict)
    source_ip: str | None = None
    api_key_id: str | None = None  # requestContext.identity.apiKeyId: set by API Gateway for a keyed method

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Guard:
    """What a request must pass before any work is done: the API key (when one is configured), the body size,
    and for /feedback the per-client token bucket. Built once per process from the settings."""

    api_key: ApiKeyCheck
    max_body_bytes: int
    feedback_limit: TokenBucket | None

    @classmethod
    def from_settings(cls, s: Settings, clock: Callable[[], float] = time.monotonic) -> Guard:
        key = s.api_key.get_secret_value() if s.api_key else None
        rate = s.feedback_rate_per_s
        limit = TokenBucket(rate, s.feedback_burst, clock=clock) if rate > 0 else None
        return cls(ApiKeyCheck(key or None), s.max_body_bytes, limit)

    def admit(self, req: HttpRequest, *, rate_limited: bool = False) -> None:
        presented = req.header(API_KEY_HEADER)
        self.api_key.check(presented)
        if req.body is not None and len(req.body) > self.max_body_bytes:
            raise PayloadTooLarge(f"request body is {len(req.body)} bytes; the limit is {self.max_body_bytes}")
        if rate_limited and self.feedback_limit is not None:
            self.feedback_limit.take(self.client_of(req, presented))

    def tenant_of(self, req: HttpRequest) -> str:
        """Whose data a request may touch: the API key API Gateway checked (its id), or the key this process
        checked (its fingerprint), or the one public tenant when no key is in use."""
        if req.api_key_id:
            return "apikey-" + req.api_key_id
        return self._checked_key(req.header(API_KEY_HEADER)) or PUBLIC_TENANT

    def client_of(self, req: HttpRequest, presented: str | None) -> str:
        """The rate-limited client: the API key once it has been checked, else the source IP."""
        return self._checked_key(presented) or client_id(req.source_ip)

    def _checked_key(self, presented: str | None) -> str | None:
        """The configured key's identity when the request carries it (admit has checked it), never the key."""
        return "key-" + key_fingerprint(presented) if presented and self.api_key.required else None


def json_response(status: int, obj: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps(obj))


def error_response(exc: RagError) -> HttpResponse:
    status = status_of(exc)
    (logger.warning if status < 500 else logger.error)("request failed", extra={"code": exc.code, "error": str(exc)})
    return HttpResponse(status, error_body(exc.code, str(exc)), {**JSON, **headers_of(exc)})


def parse(model: type[M], raw: bytes | None) -> M:
    if raw is None or not raw.strip():
        raise InvalidJson("request body is empty: send a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJson(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors())
        raise InvalidInput(problems) from exc


def client_id(source_ip: str | None) -> str:
    """An anonymous voter's identity for dedupe: a hash, so raw IPs are never stored."""
    if not source_ip:
        return "anonymous"
    return "ip-" + hashlib.sha256(source_ip.encode()).hexdigest()[:16]


def _citation(c: Citation) -> dict[str, Any]:
    return {
        "doc_id": c.doc_id,
        "chunk_id": c.chunk_id,
        "title": c.title,
        "snippet": c.snippet,
        "score": c.score,
        "rank": c.rank,
        "boosted": c.boosted,
        "url": c.url or None,
        "page": c.page or None,
        "rerank_score": c.rerank_score,
    }


def _rerank(r: RerankReport) -> dict[str, Any]:
    return {"status": r.status, "model": r.model, "reason": r.reason}


def _answer_body(a: Answer) -> dict[str, Any]:
    t = a.timings
    return {
        "query_id": a.query_id,
        "answer": a.answer,
        **a.pair.as_dict(),
        "retrieval_mode": a.mode,
        "steered": a.steered,
        "citations": [_citation(c) for c in a.citations],
        "rerank": _rerank(a.rerank),
        "timings_ms": {
            "encode": round(t.encode_ms, 3),
            "search": round(t.search_ms, 3),
            "rerank": round(t.rerank_ms, 3),
            "generate": round(t.generate_ms, 3),
            "total": round(t.total_ms, 3),
        },
    }


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _sse_events(rt: Runtime, req: AskRequest, voter: str, tenant: str) -> Iterator[str]:
    live = rt.live.current()
    retrieval, deltas = ask_logic.ask_stream(
        req.query,
        req.top_k,
        live,
        rt.query_tokens,
        rt.generator,
        client_id=voter,
        tenant=tenant,
        reranking=rt.reranking,
    )
    rerank_metrics(retrieval.rerank, retrieval.rerank_ms)
    yield _sse(
        "citations",
        {
            "query_id": retrieval.query_id,
            **retrieval.pair.as_dict(),
            "retrieval_mode": retrieval.mode,
            "steered": retrieval.steered,
            "citations": [_citation(c) for c in retrieval.citations],
            "rerank": _rerank(retrieval.rerank),
        },
    )
    for text in deltas:
        yield _sse("delta", {"text": text})
    yield _sse("done", {"query_id": retrieval.query_id})


def rerank_metrics(report: RerankReport, ms: float) -> None:
    """RerankLatency apart from AskLatency's retrieval part; RerankSkipped counts the answers left unreranked."""
    if report.status == "applied":
        add_api_metric("RerankLatency", MetricUnit.Milliseconds, ms)
    elif report.status == "skipped":
        add_api_metric("RerankSkipped", MetricUnit.Count, 1)


def ask(rt: Runtime, request: HttpRequest, guard: Guard) -> HttpResponse:
    try:
        guard.admit(request)
        req = parse(AskRequest, request.body)
        voter, tenant = client_id(request.source_ip), guard.tenant_of(request)
        if req.stream or (request.header("accept") or "").startswith("text/event-stream"):
            # API Gateway REST + Chalice buffer the whole body: the client gets every event at once.
            body = "".join(_sse_events(rt, req, voter, tenant))
            return HttpResponse(200, body, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        answer = ask_logic.ask(
            req.query,
            req.top_k,
            rt.live.current(),
            rt.query_tokens,
            rt.generator,
            client_id=voter,
            tenant=tenant,
            reranking=rt.reranking,
        )
    except RagError as exc:
        return error_response(exc)
    rerank_metrics(answer.rerank, answer.timings.rerank_ms)
    add_api_metric("AskLatency", MetricUnit.Milliseconds, answer.timings.total_ms)
    # Query text is user data: INFO logs carry the id only, the full text only at DEBUG.
    logger.info(
        "ask",
        extra={"query_id": answer.log_id, **answer.pair.as_dict(), "timings_ms": round(answer.timings.total_ms, 3)},
    )
    logger.debug("ask query text", extra={"query_id": answer.log_id, "query": req.query})
    return json_response(200, _answer_body(answer))


def feedback(rt: Runtime, request: HttpRequest, guard: Guard) -> HttpResponse:
    try:
        guard.admit(request, rate_limited=True)
        req = parse(FeedbackRequest, request.body)
        recorded = record_feedback(
            rt.feedback,
            rt.query_tokens,
            query_id=req.query_id,
            doc_id=req.doc_id,
            vote=req.vote,
            user_id=req.user_id,
            client_id=client_id(request.source_ip),
            comment=req.comment,
            window_s=rt.settings.dedupe_window_s,
            tenant=guard.tenant_of(request),
        )
    except RagError as exc:
        return error_response(exc)
    add_api_metric("FeedbackRecorded" if recorded else "FeedbackDuplicate", MetricUnit.Count, 1)
    if recorded:
        add_api_metric("VoteUp" if req.vote == "up" else "VoteDown", MetricUnit.Count, 1)
        return json_response(201, {"status": "recorded"})
    return json_response(200, {"status": "duplicate"})


def health(rt: Runtime) -> HttpResponse:
    try:
        live = rt.live.current()
    except RagError as exc:
        return error_response(exc)
    m = live.manifest
    body = {"status": "ok", **live.pair.as_dict(), "documents": m.documents, "chunks": m.chunks}
    reason = rt.live.degraded
    if reason:  # still answering, from the last pair that loaded: say so, and why
        body.update(status="degraded", reason=reason)
    return json_response(200, body)
