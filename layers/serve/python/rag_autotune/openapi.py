"""The OpenAPI 3 document, built from the pydantic models in schemas.py (checked in as openapi.json; a test
keeps the checked-in copy equal to this)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from . import __version__
from .schemas import AskRequest, AskResponse, ErrorResponse, FeedbackRequest, FeedbackResponse, HealthResponse

_MODELS: tuple[type[BaseModel], ...] = (
    AskRequest,
    AskResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    ErrorResponse,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _error(description: str, retry_after: bool | None = None) -> dict[str, Any]:
    """An error answer; retry_after: True when it always carries Retry-After, False when it may."""
    out = _json(ErrorResponse, description)
    if retry_after is not None:
        out["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again",
                "required": retry_after,
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return out


# Every answer /ask and /feedback share: the guard (key, size) and the dependencies behind them.
_GUARDED: dict[str, Any] = {
    "400": _error("Body is not JSON"),
    "401": _error("An API key is configured and the x-api-key header is missing"),
    "403": _error("The x-api-key header does not match the API key"),
    "413": _error("Body larger than the limit (RAG_MAX_BODY_BYTES, 64 KiB by default)"),
    "502": _error("A dependency (DynamoDB, S3, Bedrock) failed"),
}
# One Server-Sent Event of a streamed answer (the schema applies to each event, as OpenAPI 3.2's itemSchema).
_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["citations", "delta", "done"]},
        "data": {
            "type": "string",
            "description": "JSON: citations, versions and retrieval_mode, {text}, or {query_id}",
        },
    },
    "required": ["event", "data"],
}
_SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}]


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "RAG-Autotune API",
            "version": __version__,
            "description": "Ask questions of your documents, vote on the cited documents; the retriever "
            "is tuned on the votes every night.",
        },
        "paths": {
            "/ask": {
                "post": {
                    "operationId": "ask",
                    "summary": "Answer a question with citations",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(AskRequest)}}},
                    "responses": {
                        "200": {
                            "description": "The answer. With stream=true or Accept: text/event-stream, a "
                            "Server-Sent-Events body: a `citations` event, `delta` events, then `done` with "
                            "query_id. API Gateway (REST) buffers it: the events arrive together.",
                            "content": {
                                "application/json": {"schema": _ref(AskResponse)},
                                "text/event-stream": {"schema": _SSE_EVENT},
                            },
                        },
                        **_GUARDED,
                        "422": _error("Body does not match the schema"),
                        "503": _error("No model/index pair is live yet, or DynamoDB is throttling", False),
                    },
                    "security": _SECURITY,
                }
            },
            "/feedback": {
                "post": {
                    "operationId": "feedback",
                    "summary": "Vote on a document cited by an answer",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(FeedbackRequest)}},
                    },
                    "responses": {
                        "201": _json(FeedbackResponse, "Recorded"),
                        "200": _json(FeedbackResponse, "The same vote within the dedupe window: not counted again"),
                        **_GUARDED,
                        "404": _error("Unknown query_id"),
                        "422": _error("Body does not match the schema, or doc_id was not cited by that query"),
                        "429": _error("Too many votes from this client (API key, else source IP)", True),
                        "503": _error("DynamoDB is throttling: the vote was not recorded, send it again", False),
                    },
                    "security": _SECURITY,
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "The live model and index versions",
                    "responses": {
                        "200": _json(HealthResponse, "Serving"),
                        "503": _error("No model/index pair is live yet"),
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "On AWS, API Gateway requires it (usage plan). The embedded default requires "
                    "it only when RAG_AUTOTUNE_API_KEY is set.",
                }
            },
        },
    }
