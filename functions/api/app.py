"""The API Lambda (API Gateway REST, payload 1.0): /ask, /feedback, /health, /openapi.json.
Each route is a decorator plus one call into rag_autotune.http_api; everything expensive is built once.
/ask and /feedback pass the guard (API key when RAG_AUTOTUNE_API_KEY is set, body size, feedback rate);
/health and /openapi.json stay open."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalice import Chalice, Response

from rag_autotune import http_api
from rag_autotune.errors import RagError
from rag_autotune.observability import api_request_started, flush_api_metrics, logger, tracer
from rag_autotune.openapi import openapi_document
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.static_files import DASHBOARD_KEY, StaticFiles, stored_page

app = Chalice(app_name="rag-autotune-api")
runtime = Runtime(get_settings())
guard = http_api.Guard.from_settings(runtime.settings)  # API key, body size, per-client feedback bucket
ANY_TYPE = ["*/*"]  # the body is parsed by http_api so that every bad input gets the same JSON error

if runtime.settings.warm_on_init:  # load the live encoder and shard during init, not on the first request
    try:
        runtime.live.current()
    except RagError as exc:
        logger.warning("not ready at init", extra={"error": str(exc)})


def _send(r: http_api.HttpResponse) -> Response:
    return Response(body=r.body, status_code=r.status, headers=r.headers)


def _request() -> http_api.HttpRequest:
    req = app.current_request
    return http_api.HttpRequest(
        body=req.raw_body,
        headers={k.lower(): v for k, v in req.headers.items()},
        source_ip=req.context.get("identity", {}).get("sourceIp"),
        api_key_id=req.context.get("identity", {}).get("apiKeyId"),
    )


@app.middleware("http")
def uniform_errors_and_metrics(event: Any, get_response: Any) -> Response:
    """Chalice's own 4xx/5xx (405, 415, unhandled) in our {"error": {...}} shape; metrics flushed per request."""
    api_request_started(event.context.get("requestId"))
    try:
        response = get_response(event)
    finally:
        flush_api_metrics()
    if response.status_code >= 400 and isinstance(response.body, dict) and "Code" in response.body:
        body = {"error": {"code": str(response.body["Code"]), "message": str(response.body.get("Message"))}}
        response = Response(
            body=json.dumps(body),
            status_code=response.status_code,
            headers={**response.headers, "Content-Type": "application/json"},
        )
    return response


@app.route("/ask", methods=["POST"], content_types=ANY_TYPE, cors=True)
@tracer.capture_method(capture_response=False)  # an X-Ray subsegment per request; boto3 calls nest in it
def ask() -> Response:
    return _send(http_api.ask(runtime, _request(), guard))


@app.route("/feedback", methods=["POST"], content_types=ANY_TYPE, cors=True)
@tracer.capture_method(capture_response=False)
def feedback() -> Response:
    return _send(http_api.feedback(runtime, _request(), guard))


@app.route("/health", methods=["GET"], cors=True)
@tracer.capture_method(capture_response=False)
def health() -> Response:
    return _send(http_api.health(runtime))


@app.route("/openapi.json", methods=["GET"], cors=True)
def openapi() -> Response:
    return Response(body=json.dumps(openapi_document()), headers={"Content-Type": "application/json"})


# The embeddable widget and its demo page (functions/api/web/), read once at cold start.
web = StaticFiles(Path(__file__).parent / "web", ("index.html", "widget.js", "widget.css"))


@app.route("/", methods=["GET"])
def demo_page() -> Response:
    return _send(web.get("index.html"))


@app.route("/widget.js", methods=["GET"], cors=True)
def widget_js() -> Response:
    return _send(web.get("widget.js"))


@app.route("/widget.css", methods=["GET"], cors=True)
def widget_css() -> Response:
    return _send(web.get("widget.css"))


@app.route("/dashboard", methods=["GET"])
def dashboard() -> Response:
    return _send(stored_page(runtime.store, DASHBOARD_KEY, "no dashboard yet: run `rag-autotune dashboard`"))
