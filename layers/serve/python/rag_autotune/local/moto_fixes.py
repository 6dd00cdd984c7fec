"""Make moto's threaded server as atomic as the services it stands in for.

moto checks a condition and then writes without a lock: S3 If-Match/If-None-Match on put_object, and
DynamoDB transact_write_items (which snapshots the table, checks, writes, and restores on failure). Under
concurrent requests two writers can both win, or a committed write can be lost. AWS serialises these; one
lock per service over moto's backend calls does the same here. Applied once, in the process running moto."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_applied = False
_DYNAMO_OPS = ("transact_write_items", "put_item", "update_item", "delete_item", "get_item", "query")


def _locked(orig: Callable[..., Any], lock: Any) -> Callable[..., Any]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return orig(self, *args, **kwargs)

    call.__wrapped__ = orig  # type: ignore[attr-defined]
    return call


def apply() -> None:
    global _applied
    if _applied:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.s3.responses import S3Response

    dynamo_lock = threading.RLock()  # transact_write_items calls put_item on the same thread
    for name in _DYNAMO_OPS:
        setattr(DynamoDBBackend, name, _locked(getattr(DynamoDBBackend, name), dynamo_lock))
    S3Response.put_object = _locked(S3Response.put_object, threading.Lock())  # type: ignore[method-assign]
    _applied = True
