"""The local API server runs requests concurrently, as concurrent Lambda instances would, and each request sees
its own `app.current_request`. A real HTTP server on a free port; events instead of sleeps (the timeouts only
bound a failing run)."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any

from chalice import Chalice

from rag_autotune.local.server import ApiServer, concurrent

WAIT_S = 30.0


def _get(url_port: int, path: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", url_port, timeout=WAIT_S)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    return json.loads(body)  # type: ignore[no-any-return]


def test_a_request_does_not_wait_behind_a_slow_one_and_each_sees_its_own_request() -> None:
    app = Chalice(app_name="concurrency")
    entered, release = threading.Event(), threading.Event()

    @app.route("/slow/{tag}")
    def slow(tag: str) -> dict[str, Any]:
        entered.set()
        assert release.wait(WAIT_S), "the fast request never completed while this one was held"
        return {"path": app.current_request.path, "tag": tag}

    @app.route("/fast/{tag}")
    def fast(tag: str) -> dict[str, Any]:
        return {"path": app.current_request.path, "tag": tag}

    server = ApiServer(app, port=0).start()
    try:
        slow_result: dict[str, Any] = {}
        held = threading.Thread(target=lambda: slow_result.update(_get(server.port, "/slow/a")))
        held.start()
        assert entered.wait(WAIT_S)
        # The slow request is inside the app: with one request at a time, this one would wait for it.
        assert _get(server.port, "/fast/b") == {"path": "/fast/{tag}", "tag": "b"}
        release.set()
        held.join(WAIT_S)
        assert slow_result == {"path": "/slow/{tag}", "tag": "a"}  # not the fast request's, set meanwhile
    finally:
        release.set()
        server.stop()


def test_concurrent_keeps_per_request_attributes_per_thread() -> None:
    app = concurrent(Chalice(app_name="threads"))
    assert concurrent(app) is app  # idempotent
    app.current_request = "main"
    seen: list[object] = []
    other = threading.Thread(target=lambda: (seen.append(app.current_request), setattr(app, "current_request", "x")))
    other.start()
    other.join()
    assert seen == [None]  # a new thread starts with no request
    assert app.current_request == "main"  # and its own did not replace this thread's
