"""The one place where exceptions become HTTP status codes. Every error body is {"error": {code, message}}."""

from __future__ import annotations

import json
import math

from . import errors

STATUS: dict[type[errors.RagError], int] = {
    errors.PayloadTooLarge: 413,
    errors.InvalidJson: 400,
    errors.InvalidInput: 422,
    errors.MissingApiKey: 401,
    errors.InvalidApiKey: 403,
    errors.UnknownQuery: 404,
    errors.DocNotCited: 422,
    errors.RateLimited: 429,
    errors.Throttled: 503,
    errors.NotReady: 503,
    errors.CorruptArtifact: 503,  # the live model or shard is damaged and there is no older pair to serve
    errors.ConflictError: 409,
    errors.UpstreamError: 502,
}


def status_of(exc: errors.RagError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def headers_of(exc: errors.RagError) -> dict[str, str]:
    """Headers an error answer carries besides Content-Type: Retry-After (whole seconds, at least 1)."""
    if isinstance(exc, errors.RetryLater):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return {}


def error_body(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})
