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
in one process, as `make run` had them then, the threads then share the GIL for longer and /ask's p99 got worse. The
README's Reliability section has the figures.)

Queries also skip the walk: `_narrow_query` hands moto's Query only the items its key condition can match (the
hash key's own items for the table, the index's hash key and range condition for an index), so moto's sort,
per-item size and copy touch the answer, not the table: a refresh reading the votes of the last seconds no
longer pays for every query logged. Scans, the state save's included, reuse one sorted snapshot of the table
until the next write (`tables_version()` counts the writes, which also lets the save skip an unchanged table),
start each page by bisection and skip moto's deep copy of every item (`_cheap_scan`).

moto sends no event notification when a delete in a versioned bucket creates a delete marker (AWS sends
s3:ObjectRemoved:DeleteMarkerCreated, "Object Deleted" on EventBridge): `_delete_marker_events` sends it, so
deleting a file under docs/ reaches the auto-ingest queue as it does on AWS. And moto offers every S3 event
to every rule of the region, in one loop that stops at the first rule that raises: a schedule rule (no event
pattern) matches every event in moto and raises on its Step Functions target, so the rules after it (the
docs/ rule of a stack created later) never saw the event. On AWS a rule without an event pattern matches no
event: `_pattern_rules_only` does the same."""

from __future__ import annotations

import base64
import bisect
import copy
import decimal
import inspect
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

_applied = False
_DYNAMO_OPS = ("transact_write_items", "put_item", "update_item", "delete_item", "get_item", "query")
_DYNAMO_WRITES = frozenset({"transact_write_items", "put_item", "update_item", "delete_item"})
_writes = 0  # DynamoDB writes so far (under the lock), in this process
_process = uuid.uuid4().hex  # a count is only comparable within one process
_dynamo_lock: Any = None  # the lock `apply` puts around moto's DynamoDB calls
_narrowed = threading.local()  # .items: the candidates of the Query running on this thread, with its table


def stored_items(table_name: str, region: str) -> Iterator[dict[str, Any]] | None:
    """The items of a table of this process's moto, as boto3's client returns them (N as text, B as bytes), read
    from moto's backend; None when this process runs no moto holding that table. A Scan would serialise every
    item through moto's generic response serializer, a second or more per hundred query-log items (their
    citations are lists of maps): the state save of `up` took minutes, holding moto's GIL."""
    if _dynamo_lock is None:
        return None
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.utilities import dynamo_to_dict

    table = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].tables.get(table_name)
    if table is None:
        return None
    lock = _dynamo_lock
    items, _ = _sorted_snapshot(table, lock)

    def read() -> Iterator[dict[str, Any]]:
        for item in items:
            with lock:  # update_item changes an item in place
                yield dynamo_to_dict(item.attrs)

    return read()


# Item operations whose answers are DynamoDB JSON as moto builds them (attribute values, counts, keys).
_FAST_OPS = frozenset(
    {"Query", "Scan", "GetItem", "PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
)


def _fast_json_result(orig: Callable[..., Any]) -> Callable[..., Any]:
    """moto 5.2 serialises every answer through a generic serializer driven by botocore's shapes, which walks
    each attribute of each item with several lookups: most of moto's CPU during a vote burst (the memory
    refresh's Query of the new votes, every /ask's PutItem). The answers of the item operations are already
    DynamoDB JSON once moto has built them (binary values as bytes), so they are dumped as such."""

    def execute_result(self: Any, context: Any) -> Any:
        result = self.result
        if context.operation_model.name not in _FAST_OPS or not isinstance(result, dict):
            return orig(self, context)
        body = json.dumps({k: v for k, v in result.items() if v is not None}, default=_blob, separators=(",", ":"))
        return 200, {"Content-Type": "application/x-amz-json-1.0"}, body

    execute_result.__wrapped__ = orig  # type: ignore[attr-defined]
    return execute_result


def _blob(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, decimal.Decimal):
        return str(value)  # type: ignore[return-value]
    raise TypeError(f"{type(value).__name__} in a DynamoDB answer")


def tables_version() -> str | None:
    """Changes with every DynamoDB write moto takes in this process (None until `apply`): the same version
    means the same tables."""
    return f"{_process}:{_writes}" if _applied else None


def _locked(orig: Callable[..., Any], lock: Any, counts: bool = False) -> Callable[..., Any]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _writes
        with lock:
            if counts:
                _writes += 1  # before the write: a reader seeing the old count re-reads at worst
            return orig(self, *args, **kwargs)

    call.__wrapped__ = orig  # type: ignore[attr-defined]
    return call


def apply() -> None:
    global _applied
    if _applied:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoResult
    from moto.s3.responses import S3Response

    global _dynamo_lock
    dynamo_lock = _dynamo_lock = threading.RLock()  # transact_write_items calls put_item on the same thread
    DynamoDBBackend.transact_write_items = _cheap_transactions(DynamoDBBackend.transact_write_items)  # type: ignore[method-assign]
    for name in _DYNAMO_OPS:
        setattr(DynamoDBBackend, name, _locked(getattr(DynamoDBBackend, name), dynamo_lock, name in _DYNAMO_WRITES))
    Table.all_items = _snapshot_items(dynamo_lock)  # type: ignore[method-assign]  # scan walks a snapshot too
    Table.query = _narrow_query(Table.query)  # type: ignore[method-assign]
    Table.scan = _cheap_scan(Table.scan, dynamo_lock)  # type: ignore[method-assign]
    Item.__deepcopy__ = _shallow_copy(Item.__deepcopy__)  # type: ignore[method-assign]
    Table.sorted_items = _sorted_items  # type: ignore[method-assign]
    S3Response.put_object = _locked(S3Response.put_object, threading.Lock())  # type: ignore[method-assign]
    from moto.s3.models import S3Backend

    S3Backend.delete_object = _delete_marker_events(S3Backend.delete_object)  # type: ignore[method-assign]
    from moto.events.models import Rule

    Rule.send_to_targets = _pattern_rules_only(Rule.send_to_targets)  # type: ignore[method-assign]
    DynamoResult.execute_result = _fast_json_result(DynamoResult.execute_result)  # type: ignore[method-assign]
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
        narrowed = getattr(_narrowed, "items", None)
        if narrowed is not None and narrowed[0] is self:
            return list(narrowed[1])
        return list(_sorted_snapshot(self, lock)[0])  # a copy: callers may sort or filter what they get

    return all_items


def _sorted_snapshot(table: Any, lock: Any) -> tuple[list[Any], list[Any]]:
    """The table's items in moto's order and their sort keys, sorted once per write."""
    with lock:
        cached = table.__dict__.get("_sorted_snapshot")
        if cached is not None and cached[0] == _writes:
            return cached[1], cached[2]  # type: ignore[no-any-return]
        seen = _writes
        if table.range_key_attr:
            items = [item for hash_set in table.items.values() for item in hash_set.values()]
        else:
            items = list(table.items.values())
    items.sort(key=_item_sort_key)
    keys = [_item_sort_key(item) for item in items]
    table._sorted_snapshot = (seen, items, keys)
    return items, keys


def _cheap_scan(orig: Callable[..., Any], lock: Any) -> Callable[..., Any]:
    """A Scan of the table (not an index) starts at its ExclusiveStartKey by bisection, where moto would walk
    and compare every item before it (a paginated scan, the state save's, was quadratic), and hands back the
    stored items instead of deep copies of them: the response only reads them (a projection makes new ones)."""
    signature = inspect.signature(orig)

    def scan(self: Any, *args: Any, **kwargs: Any) -> Any:
        a = signature.bind(self, *args, **kwargs).arguments
        if a.get("index_name"):
            return orig(self, *args, **kwargs)
        items, keys = _sorted_snapshot(self, lock)
        start = a.get("exclusive_start_key")
        if start:
            try:
                from moto.dynamodb.models.dynamo_type import DynamoType

                attrs = [self.hash_key_attr] + ([self.range_key_attr] if self.range_key_attr else [])
                values = [_fast_sort_key(DynamoType(start[attr])) for attr in attrs]
            except (KeyError, TypeError, ValueError, decimal.InvalidOperation):
                return orig(self, *args, **kwargs)  # moto reports a malformed start key its own way
            items = items[bisect.bisect_right(keys, tuple(values) if self.range_key_attr else values[0]) :]
        _narrowed.items, _narrowed.shallow = (self, items), True
        try:
            return orig(self, *args, **kwargs)
        finally:
            _narrowed.items, _narrowed.shallow = None, False

    scan.__wrapped__ = orig  # type: ignore[attr-defined]
    return scan


def _shallow_copy(orig: Callable[..., Any]) -> Callable[..., Any]:
    def deepcopy(self: Any, memo: dict[int, Any]) -> Any:
        return self if getattr(_narrowed, "shallow", False) else orig(self, memo)

    return deepcopy


def _narrow_query(orig: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(orig)

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        candidates = _query_candidates(self, signature.bind(self, *args, **kwargs).arguments)
        if candidates is None:
            return orig(self, *args, **kwargs)
        _narrowed.items = (self, candidates)
        try:
            return orig(self, *args, **kwargs)
        finally:
            _narrowed.items = None

    query.__wrapped__ = orig  # type: ignore[attr-defined]
    return query


def _query_candidates(table: Any, a: dict[str, Any]) -> list[Any] | None:
    """The items a Query's key condition can match (a superset of its answer: moto still applies every
    condition), or None to let moto walk the table (legacy QueryFilter, composite index keys)."""
    if a.get("filter_kwargs") or len(a.get("range_key_conditions") or []) > 1:
        return None
    hash_key, comparison, range_objs = a.get("hash_key"), a.get("range_comparison"), a.get("range_objs") or []
    index_name = a.get("index_name")
    if not index_name:
        if hash_key is None:
            return None
        found = table.items.get(hash_key)
        if found is None:
            return []
        return list(found.values()) if table.range_key_attr else [found]
    index = next((i for i in table.all_indexes() if i.name == index_name), None)
    if index is None:
        return None  # moto raises its own validation error
    hash_attrs = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
    range_attrs = [k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"]
    conditions = a.get("hash_key_conditions") or ([(hash_attrs[0], hash_key)] if hash_key is not None else [])
    if len(hash_attrs) != 1 or len(range_attrs) > 1 or len(conditions) != 1 or conditions[0][0] != hash_attrs[0]:
        return None
    (hash_attr, wanted), range_attr = conditions[0], (range_attrs[0] if range_attrs else None)
    if comparison and range_attr is None:
        return None
    out = []
    key = _fast_sort_key(wanted)
    # Query runs under the DynamoDB lock (apply): the table does not change while this walks it.
    items = table.items.values()
    for item in (i for hash_set in items for i in hash_set.values()) if table.range_key_attr else items:
        value = item.attrs.get(hash_attr)
        if value is None or value.type != wanted.type or _fast_sort_key(value) != key:
            continue
        if range_attr is not None:
            ranged = item.attrs.get(range_attr)
            if ranged is None or (comparison and not ranged.compare(comparison, range_objs)):
                continue
        out.append(item)
    return out


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
