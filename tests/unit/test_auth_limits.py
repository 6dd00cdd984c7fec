"""Issue 5, security: the API key, body size, the per-client feedback bucket, what logs may hold, unguessable
query ids, and ingested HTML returned as plain text. Through http_api with fakes (the same code the Chalice
handlers call); tests/e2e/test_hardening_http.py repeats the main cases over HTTP."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from rag_autotune import http_api
from rag_autotune.auth import ApiKeyCheck
from rag_autotune.errors import InvalidApiKey, MissingApiKey, RateLimited
from rag_autotune.observability import logger
from rag_autotune.ratelimit import TokenBucket
from rag_autotune.runtime import Runtime
from rag_autotune.settings import Settings
from tests.fakes import fake_runtime

KEY = "k3y-" + "s" * 28
SCRIPT_DOC = {
    "id": "xss.1",
    "title": "<b>Bold</b> title",
    "text": "Pipes carry data. <script>alert('pipe')</script> is how a pipe warns you & stops.",
}


def make_runtime(tmp_path: Path, api_key: str | None = None, **settings: object) -> Runtime:
    if api_key:
        settings["RAG_AUTOTUNE_API_KEY"] = api_key  # the field is read by its environment name only
    return fake_runtime(tmp_path, SCRIPT_DOC, **settings)


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return make_runtime(tmp_path)


def req(body: object, headers: dict[str, str] | None = None, ip: str = "203.0.113.9") -> http_api.HttpRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http_api.HttpRequest(raw, headers or {}, ip)


def asked(rt: Runtime, guard: http_api.Guard, query: str = "how does a pipe warn", **headers: str) -> dict:  # type: ignore[type-arg]
    r = http_api.ask(rt, req({"query": query}, headers), guard)
    assert r.status == 200, r.body
    return json.loads(r.body)  # type: ignore[no-any-return]


def error_of(r: http_api.HttpResponse) -> tuple[int, str]:
    body = json.loads(r.body)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"} and body["error"]["message"]
    assert r.headers["Content-Type"] == "application/json"
    return r.status, body["error"]["code"]


# ---- API key ---------------------------------------------------------------------------------------------


def test_no_key_configured_means_open(rt: Runtime) -> None:
    guard = http_api.Guard.from_settings(rt.settings)
    assert not guard.api_key.required
    body = asked(rt, guard)
    vote = {"query_id": body["query_id"], "doc_id": "xss.1", "vote": "up"}
    assert http_api.feedback(rt, req(vote), guard).status == 201
    # a stray header changes nothing when no key is configured
    assert http_api.feedback(rt, req(vote, {"x-api-key": "whatever"}), guard).status == 200


def test_key_from_the_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAG_AUTOTUNE_API_KEY", KEY)
    settings = Settings(cache_dir=tmp_path)
    assert isinstance(settings.api_key, SecretStr) and settings.api_key.get_secret_value() == KEY
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    assert http_api.Guard.from_settings(settings).api_key.required
    monkeypatch.setenv("RAG_AUTOTUNE_API_KEY", "")
    assert not http_api.Guard.from_settings(Settings(cache_dir=tmp_path)).api_key.required


def test_key_configured_ask_and_feedback_need_it(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, api_key=KEY)
    guard = http_api.Guard.from_settings(rt.settings)
    assert error_of(http_api.ask(rt, req({"query": "pipe"}), guard)) == (401, "missing_api_key")
    assert error_of(http_api.ask(rt, req({"query": "pipe"}, {"x-api-key": ""}), guard)) == (401, "missing_api_key")
    wrong = http_api.ask(rt, req({"query": "pipe"}, {"x-api-key": KEY[:-1] + "t"}), guard)
    assert error_of(wrong) == (403, "invalid_api_key")
    assert KEY not in wrong.body and KEY[:-1] not in wrong.body  # neither the key nor what was sent is echoed
    # the key check comes first: a bad body without the key is still 401, not 400
    assert error_of(http_api.ask(rt, req(b"{nope"), guard)) == (401, "missing_api_key")

    body = asked(rt, guard, **{"x-api-key": KEY})
    vote = {"query_id": body["query_id"], "doc_id": "xss.1", "vote": "down"}
    assert error_of(http_api.feedback(rt, req(vote), guard)) == (401, "missing_api_key")
    assert error_of(http_api.feedback(rt, req(vote, {"x-api-key": "nope"}), guard)) == (403, "invalid_api_key")
    assert http_api.feedback(rt, req(vote, {"x-api-key": KEY}), guard).status == 201
    assert http_api.health(rt).status == 200  # /health takes no guard at all


def test_key_comparison_is_constant_time_hmac(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    from rag_autotune import auth

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    check = ApiKeyCheck(KEY)
    check.check(KEY)
    with pytest.raises(InvalidApiKey):
        check.check("x")  # a different length is compared the same way: both sides are sha256 digests
    with pytest.raises(MissingApiKey):
        check.check(None)
    assert len(calls) == 2 and all(len(a) == len(b) == 32 for a, b in calls)
    with pytest.raises(InvalidApiKey):
        check.check("\ud800")  # a lone surrogate (event JSON may hold one) is refused, not a crash


# ---- body size, lengths, top_k ---------------------------------------------------------------------------


def test_body_larger_than_the_limit_is_413(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, max_body_bytes=2048)
    guard = http_api.Guard.from_settings(rt.settings)
    big = {"query": "pipe", "pad": "x" * 3000}
    assert error_of(http_api.ask(rt, req(big), guard)) == (413, "payload_too_large")
    assert error_of(http_api.feedback(rt, req(big), guard)) == (413, "payload_too_large")
    assert error_of(http_api.ask(rt, req({"query": "x" * 2001}), guard)) == (422, "invalid_input")


@pytest.mark.parametrize(
    "payload",
    [
        {"query": "x" * 2001},
        {"query": "ok", "top_k": 21},
        {"query": "ok", "top_k": 0},
        {"query_id": "q", "doc_id": "d", "vote": "up", "comment": "c" * 1001},
        {"query_id": "q" * 8193, "doc_id": "d", "vote": "up"},
    ],
)
def test_lengths_and_top_k_are_bounded(rt: Runtime, payload: dict) -> None:  # type: ignore[type-arg]
    guard = http_api.Guard.from_settings(rt.settings)
    handler = http_api.ask if "query" in payload else http_api.feedback
    assert error_of(handler(rt, req(payload), guard)) == (422, "invalid_input")


def test_the_largest_valid_request_fits_the_default_body_limit(rt: Runtime) -> None:
    """2000 astral characters, every one \\u-escaped by the client, is still under the default 64 KiB."""
    query = "\U0001f600" * 2000
    raw = json.dumps({"query": query, "top_k": 20}).encode()  # ensure_ascii: 12 bytes per character
    assert len(raw) > 24_000
    guard = http_api.Guard.from_settings(rt.settings)
    assert http_api.ask(rt, req(raw), guard).status == 200


# ---- the feedback bucket ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_burst_refill_and_retry_after() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=0.5, burst=3, clock=clock)
    for _ in range(3):
        bucket.take("a")
    with pytest.raises(RateLimited) as info:
        bucket.take("a")
    assert info.value.retry_after_s == pytest.approx(2.0)
    bucket.take("b")  # another client has its own bucket
    clock.t += 1.0
    with pytest.raises(RateLimited) as info:
        bucket.take("a")
    assert info.value.retry_after_s == pytest.approx(1.0)
    clock.t += 1.0
    bucket.take("a")  # one token back after 2 s
    clock.t += 1000
    for _ in range(3):  # never more than the burst, however long the wait
        bucket.take("a")
    with pytest.raises(RateLimited):
        bucket.take("a")


def test_token_bucket_memory_is_bounded() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=1, max_clients=100, clock=Clock())
    for i in range(1000):
        bucket.take(f"client-{i}")
    assert len(bucket._buckets) == 100


def test_feedback_rate_limit_is_429_with_retry_after_per_client(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, feedback_rate_per_s=0.25, feedback_burst=2)
    clock = Clock()
    guard = http_api.Guard.from_settings(rt.settings, clock=clock)
    body = asked(rt, guard)
    vote = {"query_id": body["query_id"], "doc_id": "xss.1", "vote": "up"}
    assert http_api.feedback(rt, req(vote), guard).status == 201
    assert http_api.feedback(rt, req(b"{bad json"), guard).status == 400  # invalid requests spend tokens too
    limited = http_api.feedback(rt, req(vote), guard)
    assert error_of(limited) == (429, "rate_limited")
    assert limited.headers["Retry-After"] == "4"  # one token at 0.25/s
    assert http_api.feedback(rt, req(vote, ip="198.51.100.1"), guard).status == 201  # another IP: own bucket
    assert asked(rt, guard)["query_id"]  # /ask is not limited by the feedback bucket
    clock.t += 3
    assert error_of(http_api.feedback(rt, req(vote), guard)) == (429, "rate_limited")
    clock.t += 1
    assert http_api.feedback(rt, req(vote), guard).status == 200  # the token is back (the vote: a duplicate)


def test_with_a_key_the_bucket_is_per_key(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, api_key=KEY, feedback_rate_per_s=0.01, feedback_burst=1)
    guard = http_api.Guard.from_settings(rt.settings, clock=Clock())
    body = asked(rt, guard, **{"x-api-key": KEY})
    vote = {"query_id": body["query_id"], "doc_id": "xss.1", "vote": "up"}
    assert http_api.feedback(rt, req(vote, {"x-api-key": KEY}, ip="192.0.2.1"), guard).status == 201
    # the same key from another IP is the same client
    r = http_api.feedback(rt, req(vote, {"x-api-key": KEY}, ip="192.0.2.2"), guard)
    assert error_of(r) == (429, "rate_limited")
    # a request without the key is refused before it can spend anybody's tokens
    assert error_of(http_api.feedback(rt, req(vote, ip="192.0.2.3"), guard)) == (401, "missing_api_key")


def test_rate_zero_turns_the_bucket_off(rt: Runtime) -> None:
    assert rt.settings.feedback_rate_per_s == 0  # tests/conftest.py: simulated users are fast
    assert http_api.Guard.from_settings(rt.settings).feedback_limit is None
    defaults = Settings.model_fields
    assert defaults["feedback_rate_per_s"].default > 0 and defaults["feedback_burst"].default >= 1


# ---- no data leaks ---------------------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[list[tuple[int, str]]]:
    """Every record the service logger emits, formatted as Powertools formats it (JSON with the extras)."""
    lines: list[tuple[int, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append((record.levelno, self.format(record)))

    handler = Keep()
    handler.setFormatter(logger.registered_formatter)
    std = logging.getLogger(logger.name)
    std.addHandler(handler)
    level = logger.log_level
    logger.setLevel("DEBUG")
    yield lines
    logger.setLevel(level)
    std.removeHandler(handler)


def test_logs_hold_no_api_key_and_query_text_only_at_debug(tmp_path: Path, log_lines: list[tuple[int, str]]) -> None:
    rt = make_runtime(tmp_path, api_key=KEY, feedback_rate_per_s=0.01, feedback_burst=1)
    guard = http_api.Guard.from_settings(rt.settings, clock=Clock())
    query = "a very private question about pipes 7f3a"
    body = asked(rt, guard, query, **{"x-api-key": KEY})
    vote = {"query_id": body["query_id"], "doc_id": "xss.1", "vote": "up", "comment": "secret comment 9c1"}
    assert http_api.feedback(rt, req(vote, {"x-api-key": KEY}), guard).status == 201
    http_api.feedback(rt, req(vote, {"x-api-key": KEY}), guard)  # 429: logged as a warning
    http_api.ask(rt, req({"query": query}, {"x-api-key": "wrong-" + KEY}), guard)  # 403: logged
    http_api.ask(rt, req({"query": query, "top_k": 99}, {"x-api-key": KEY}), guard)  # 422: logged
    http_api.feedback(rt, req({**vote, "doc_id": "nope"}, {"x-api-key": "x"}), guard)

    assert any(level >= logging.WARNING for level, _ in log_lines)  # the failures above were logged
    for level, line in log_lines:
        assert KEY not in line and "wrong-" not in line
        assert "secret comment" not in line
        if level > logging.DEBUG:
            assert query not in line, line
    assert any(level == logging.DEBUG and query in line for level, line in log_lines)


def test_query_ids_are_signed_and_name_a_random_uuid4(rt: Runtime) -> None:
    guard = http_api.Guard.from_settings(rt.settings)
    ids = [asked(rt, guard)["query_id"] for _ in range(50)]
    assert len(set(ids)) == 50
    for qid in ids:
        inner = rt.query_tokens.read(qid).query_id  # what votes and logs name the query by
        assert len(inner) == 32 and uuid.UUID(hex=inner).version == 4  # 122 random bits from os.urandom


# ---- ingested text is data -------------------------------------------------------------------------------


def test_html_in_a_document_comes_back_as_plain_text(rt: Runtime) -> None:
    guard = http_api.Guard.from_settings(rt.settings)
    r = http_api.ask(rt, req({"query": "how does a pipe warn you"}), guard)
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    body = json.loads(r.body)
    (cite,) = body["citations"]
    assert cite["title"] == "<b>Bold</b> title"
    assert "<script>alert('pipe')</script>" in cite["snippet"]
    assert "<script>alert('pipe')</script>" in body["answer"]
    assert "&lt;" not in r.body and "&amp;" not in r.body  # JSON is not HTML: nothing is entity-escaped
    streamed = http_api.ask(rt, req({"query": "how does a pipe warn you", "stream": True}), guard)
    assert "<script>alert('pipe')</script>" in streamed.body


def test_a_vote_cannot_reach_another_tenants_query(rt: Runtime) -> None:
    """Tenants are API keys. A query asked with key A is unknown (404, as if it did not exist) to key B and to
    keyless callers; key A votes on it as usual. API Gateway's apiKeyId names the tenant when it checked the key."""
    from rag_autotune.domain import PUBLIC_TENANT

    guard = http_api.Guard(ApiKeyCheck(None), 65536, None)  # the key was checked by API Gateway
    assert guard.tenant_of(req({})) == PUBLIC_TENANT
    as_a = http_api.HttpRequest(json.dumps({"query": "make a pipe"}).encode(), {}, "203.0.113.9", "key-id-a")
    assert guard.tenant_of(as_a) == "apikey-key-id-a"
    answer = json.loads(http_api.ask(rt, as_a, guard).body)
    vote = json.dumps({"query_id": answer["query_id"], "doc_id": answer["citations"][0]["doc_id"], "vote": "up"})
    for other in ("key-id-b", None):
        refused = http_api.feedback(rt, http_api.HttpRequest(vote.encode(), {}, "198.51.100.7", other), guard)
        assert error_of(refused) == (404, "unknown_query")
    assert (
        http_api.feedback(rt, http_api.HttpRequest(vote.encode(), {}, "198.51.100.7", "key-id-a"), guard).status == 201
    )


def test_with_the_embedded_key_the_key_is_the_tenant(rt: Runtime) -> None:
    guard = http_api.Guard(ApiKeyCheck("s3cret"), 65536, None)
    answer = asked(rt, guard, "make a pipe", **{"x-api-key": "s3cret"})
    vote = {"query_id": answer["query_id"], "doc_id": answer["citations"][0]["doc_id"], "vote": "up"}
    assert http_api.feedback(rt, req(vote, {"x-api-key": "s3cret"}), guard).status == 201
    assert guard.tenant_of(req({}, {"x-api-key": "s3cret"})).startswith("key-")
