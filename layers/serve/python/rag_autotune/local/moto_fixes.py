"""Make moto's threaded server as atomic as the services it stands in for.

moto checks a condition and then writes without a lock: S3 If-Match/If-None-Match on put_object, and
DynamoDB transact_write_items (which snapshots the table, checks, writes, and restores on failure). Under
concurrent requests two writers can both win, or a committed write can be lost. AWS serialises these; one
lock per service over moto's backend calls does the same here. Applied once, in the process running moto.

moto's transact_write_items also deep-copies every table it touches, on every call, to roll back on failure:
O(table) per vote, so the embedded default's /feedback got slower with every vote. Under the lock it is
enough to keep the items the transaction names: `_cheap_transactions` hands moto a placeholder instead of the
table copy and, if moto rolls back to it, restores those items.

moto's Query walks and sorts every item of the table, O(table), under that lock, so every local write waits
while a feedback-memory refresh queries the vote index. Both of moto's sorts (the table's items by key, then
an index's matches by its keys) compared DynamoType objects, which re-parse their value on every comparison;
`_fast_sort_key` gives moto's order for the key types DynamoDB allows (S, N, B) from plain Python values, so
the lock is held for a fraction of the time. (Running Query outside the lock was tried: with moto and the API
in one process, as in `make run`, the threads then share the GIL for longer and /ask's p99 got worse. The
README's Reliability section has the figures.)

moto sends no event notification when a delete in a versioned bucket creates a delete marker (AWS sends
s3:ObjectRemoved:DeleteMarkerCreated, "Object Deleted" on EventBridge): `_delete_marker_events` sends it, so
deleting a file under docs/ reaches the auto-ingest queue as it does on AWS. And moto offers every S3 event
to every rule of the region, in one loop that stops at the first rule that raises: a schedule rule (no event
pattern) matches every event in moto and raises on its Step Functions target, so the rules after it (the
docs/ rule of a stack created later) never saw the event. On AWS a rule without an event pattern matches no
event: `_pattern_rules_only` does the same."""

from __future__ import annotations

import copy
import decimal
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
    from moto.dynamodb.models.table import Table
    from moto.s3.responses import S3Response

    dynamo_lock = threading.RLock()  # transact_write_items calls put_item on the same thread
    DynamoDBBackend.transact_write_items = _cheap_transactions(DynamoDBBackend.transact_write_items)  # type: ignore[method-assign]
    for name in _DYNAMO_OPS:
        setattr(DynamoDBBackend, name, _locked(getattr(DynamoDBBackend, name), dynamo_lock))
    Table.all_items = _snapshot_items(dynamo_lock)  # type: ignore[method-assign]  # scan walks a snapshot too
    Table.sorted_items = _sorted_items  # type: ignore[method-assign]
    S3Response.put_object = _locked(S3Response.put_object, threading.Lock())  # type: ignore[method-assign]
    from moto.s3.models import S3Backend

    S3Backend.delete_object = _delete_marker_events(S3Backend.delete_object)  # type: ignore[method-assign]
    from moto.events.models import Rule

    Rule.send_to_targets = _pattern_rules_only(Rule.send_to_targets)  # type: ignore[method-assign]
    _applied = True


def _pattern_rules_only(orig: Callable[..., Any]) -> Callable[..., Any]:
    def send_to_targets(self: Any, event: Any, *a: Any, **kw: Any) -> Any:
        if not self.event_pattern.get_pattern():
            return None
        return orig(self, event, *a, **kw)

    send_to_targets.__wrapped__ = orig  # type: ignore[attr-defined]
    return send_to_targets


def _delete_marker_events(orig: Callable[..., Any]) -> Callable[..., Any]:
    from moto.s3 import notifications
    from moto.s3.models import FakeDeleteMarker

    def delete_object(
        self: Any, bucket_name: str, key_name: str, version_id: str | None = None, *a: Any, **kw: Any
    ) -> Any:
        bucket = self.get_bucket(bucket_name)
        current = bucket.keys.get(key_name)
        marks = bucket.is_versioned and version_id is None and current is not None
        result = orig(self, bucket_name, key_name, version_id, *a, **kw)
        if marks and not isinstance(current, FakeDeleteMarker):
            event = notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_MARKER_CREATED_EVENT
            notifications.send_event(self.account_id, event, bucket, current)
        return result

    delete_object.__wrapped__ = orig  # type: ignore[attr-defined]
    return delete_object


def _fast_sort_key(value: Any) -> Any:
    """A DynamoType key attribute as a plain value in moto's order: N numerically, S and B by their stored
    strings (moto compares B as its base64 text)."""
    return decimal.Decimal(value.value) if value.type == "N" else value.value


def _item_sort_key(item: Any) -> Any:
    return (
        (_fast_sort_key(item.hash_key), _fast_sort_key(item.range_key))
        if item.range_key
        else _fast_sort_key(item.hash_key)
    )


def _snapshot_items(lock: Any) -> Callable[..., Any]:
    def all_items(self: Any) -> list[Any]:
        with lock:
            if self.range_key_attr:
                items = [item for hash_set in self.items.values() for item in hash_set.values()]
            else:
                items = list(self.items.values())
        return sorted(items, key=_item_sort_key)

    return all_items


def _sorted_items(self: Any, hash_key_attrs: list[str], range_key_attrs: list[str | None], items: list[Any]) -> Any:
    attrs = self._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs)
    items.sort(key=lambda x: tuple(_fast_sort_key(x.attrs[key]) for key in attrs))
    return items


class _NotCopied:
    """Stands in for moto's whole-table copy; if moto 'restores' it, the wrapper below puts things right."""


def _item_key(table: Any, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    attrs = op["Item"]
    keys = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    return {k: attrs[k] for k in keys if k in attrs}


def _cheap_transactions(orig: Callable[..., Any]) -> Callable[..., Any]:
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        from moto.dynamodb.models.table import Table

        before: list[tuple[str, dict[str, Any], Any]] = []  # (table, key, a copy of the item or None)
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            try:
                key = _item_key(table, op_type, op)
                current = self.get_item(op["TableName"], key)
            except Exception:  # noqa: BLE001 - a malformed op: moto's own call reports it
                continue
            before.append((op["TableName"], key, copy.deepcopy(current) if current is not None else None))
        tables = dict(self.tables)
        saved = Table.__dict__.get("__deepcopy__")
        Table.__deepcopy__ = lambda table, memo: _NotCopied()  # type: ignore[attr-defined]
        try:
            return orig(self, transact_items)
        except BaseException:
            rolled_back = [name for name, t in self.tables.items() if isinstance(t, _NotCopied)]
            for name in rolled_back:
                self.tables[name] = tables[name]
            if rolled_back:
                for name, key, item in reversed(before):
                    table = self.tables[name]
                    hash_value, range_value = self.get_keys_value(table, key)
                    if table.get_item(hash_value, range_value) is not None:
                        table.delete_item(hash_value, range_value)
                    if item is not None:
                        table.put_item(item.to_json()["Attributes"])
            raise
        finally:
            if saved is None:
                del Table.__deepcopy__  # type: ignore[attr-defined]
            else:
                Table.__deepcopy__ = saved  # type: ignore[attr-defined]

    transact_write_items.__wrapped__ = orig  # type: ignore[attr-defined]
    return transact_write_items
