"""The API Lambda (API Gateway REST, payload 1.0): /ask, /feedback, /health, /openapi.json.
Each route is a decorator plus one call into rag_autotune.http_api; everything expensive is built once."""

from __future__ import annotations

import json
from typing import Any

from chalice import Chalice, Response

from rag_autotune import http_api
from rag_autotune.errors import RagError
from rag_autotune.observability import logger, metrics
from rag_autotune.openapi import openapi_document
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings

app = Chalice(app_name="rag-autotune-api")
runtime = Runtime(get_settings())
ANY_TYPE = ["*/*"]  # the body is parsed by http_api so that every bad input gets the same JSON error

if runtime.settings.warm_on_init:  # load the live encoder and shard during init, not on the first request
    try:
        runtime.live.current()
    except RagError as exc:
        logger.warning("not ready at init", extra={"error": str(exc)})


def _send(r: http_api.HttpResponse) -> Response:
    return Response(body=r.body, status_code=r.status, headers=r.headers)


def _source_ip() -> str | None:
    return app.current_request.context.get("identity", {}).get("sourceIp")


@app.middleware("http")
def uniform_errors_and_metrics(event: Any, get_response: Any) -> Response:
    """Chalice's own 4xx/5xx (405, 415, unhandled) in our {"error": {...}} shape; metrics flushed per request."""
    try:
        response = get_response(event)
    finally:
        if metrics.metric_set:  # health/openapi add none: no empty EMF blobs
            metrics.flush_metrics()
    if response.status_code >= 400 and isinstance(response.body, dict) and "Code" in response.body:
        body = {"error": {"code": str(response.body["Code"]), "message": str(response.body.get("Message"))}}
        response = Response(
            body=json.dumps(body),
            status_code=response.status_code,
            headers={**response.headers, "Content-Type": "application/json"},
        )
    return response


@app.route("/ask", methods=["POST"], content_types=ANY_TYPE, cors=True)
def ask() -> Response:
    req = app.current_request
    return _send(http_api.ask(runtime, req.raw_body, req.headers.get("accept"), _source_ip()))


@app.route("/feedback", methods=["POST"], content_types=ANY_TYPE, cors=True)
def feedback() -> Response:
    return _send(http_api.feedback(runtime, app.current_request.raw_body, _source_ip()))


@app.route("/health", methods=["GET"], cors=True)
def health() -> Response:
    return _send(http_api.health(runtime))


@app.route("/openapi.json", methods=["GET"], cors=True)
def openapi() -> Response:
    return Response(body=json.dumps(openapi_document()), headers={"Content-Type": "application/json"})
