"""The one place where exceptions become HTTP status codes. Every error body is {"error": {code, message}}."""

from __future__ import annotations

import json

from . import errors

STATUS: dict[type[errors.RagError], int] = {
    errors.InvalidJson: 400,
    errors.InvalidInput: 422,
    errors.UnknownQuery: 404,
    errors.DocNotCited: 422,
    errors.NotReady: 503,
    errors.ConflictError: 409,
    errors.UpstreamError: 502,
}


def status_of(exc: errors.RagError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})
