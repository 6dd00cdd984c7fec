"""Serve the Chalice app over HTTP the way API Gateway (REST, payload 1.0) would call it: chalice's local
gateway builds the same events and calls the same `app` object that Lambda runs.

Requests run concurrently, each on its own thread, as API Gateway runs concurrent requests on concurrent Lambda
instances: an /ask never waits behind a /feedback's DynamoDB writes. Chalice keeps the request being handled
on the app object (`current_request`, `lambda_context`); `concurrent` makes those two attributes per thread, so
each request sees its own. Everything else the app shares is built once and guarded where it changes (the live
pair's loader, the rate limiter, the feedback memory)."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer

from ..paths import REPO

API_APP = REPO / "functions" / "api" / "app.py"


def load_api_module(path: Path = API_APP) -> ModuleType:
    """Import functions/api/app.py as Lambda would (module name `app`)."""
    spec = importlib.util.spec_from_file_location("app", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    return module


_PER_REQUEST = ("current_request", "lambda_context")


def _per_thread(name: str) -> property:
    def get(self: Any) -> Any:
        return getattr(self._per_request, name, None)

    def put(self: Any, value: Any) -> None:
        setattr(self._per_request, name, value)

    return property(get, put)


def concurrent(app: Any) -> Any:
    """`app`, its per-request attributes moved to thread-local storage (its class becomes a subclass that
    holds them as properties; nothing else about the app changes)."""
    if getattr(type(app), "_per_request_is_thread_local", False):
        return app
    for name in _PER_REQUEST:
        app.__dict__.pop(name, None)
    namespace = {name: _per_thread(name) for name in _PER_REQUEST}
    app.__class__ = type(type(app).__name__, (type(app),), {**namespace, "_per_request_is_thread_local": True})
    app._per_request = threading.local()
    return app


class _Handler(ChaliceRequestHandler):
    # Headers and body go out in two writes: with Nagle on, the body waits for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the app logs each request as structured JSON already


class ApiServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
        config = Config.create(chalice_app=app, lambda_timeout=30)
        self._dev = LocalDevServer(concurrent(app), config, host, port, handler_cls=_Handler)
        # socketserver listens with a backlog of 5: more simultaneous clients than that (a widget page burst,
        # bench-load's 50) would get connection resets while the app is busy. Linux takes a new backlog as is.
        self._dev.server.socket.listen(128)
        self.host, self.port = self._dev.server.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ApiServer:
        self._thread = threading.Thread(target=self._dev.server.serve_forever, daemon=True, name="api")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._dev.server.shutdown()
        self._dev.server.server_close()
