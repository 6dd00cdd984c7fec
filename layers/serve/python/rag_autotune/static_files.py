"""Pages that are files: the widget's script, stylesheet and demo page (read once at cold start, served from
memory), and pages kept in the artifact store (the dashboard)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import ArtifactNotFound
from .http_api import HttpResponse
from .http_errors import error_body
from .ports import ArtifactStore

DASHBOARD_KEY = "reports/dashboard.html"  # written by `rag-autotune dashboard` (tune/pages.py), served at /dashboard
_TYPES = {
    ".js": "application/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


class StaticFiles:
    """name → a ready 200 response. Every name must exist when the process starts (a packaging mistake shows
    at cold start, not as a 500 on some later request)."""

    def __init__(self, folder: Path, names: tuple[str, ...]) -> None:
        self._files: dict[str, HttpResponse] = {}
        for name in names:
            path = Path(folder) / name
            if path.suffix in _TYPES:
                body = path.read_text(encoding="utf-8")
                etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:16] + '"'
                headers = {
                    "Content-Type": _TYPES[path.suffix],
                    "Cache-Control": "public, max-age=300",
                    "ETag": etag,
                    "X-Content-Type-Options": "nosniff",
                }
                self._files[path.name] = HttpResponse(200, body, headers)

    def get(self, name: str) -> HttpResponse:
        return self._files[name]


def stored_page(store: ArtifactStore, key: str, missing: str) -> HttpResponse:
    """An HTML page from the store, or 404 with `missing` as the message."""
    try:
        body = store.get_bytes(key).decode("utf-8")
    except ArtifactNotFound:
        return HttpResponse(404, error_body("not_found", missing))
    return HttpResponse(200, body, {"Content-Type": _TYPES[".html"], "Cache-Control": "no-cache"})
