"""moto's TransactWriteItems, as patched by local/moto_fixes.py (no whole-table copy per call), keeps DynamoDB's
all-or-nothing semantics: a cancelled transaction leaves every item it named as it was."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError


@pytest.fixture
def table(moto_url: str) -> str:
    name = f"fixes-{uuid.uuid4().hex[:8]}"
    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _put(name: str, pk: str, value: str, condition: str | None = None) -> dict:  # type: ignore[type-arg]
    op: dict = {"TableName": name, "Item": {"pk": {"S": pk}, "sk": {"S": "x"}, "v": {"S": value}}}  # type: ignore[type-arg]
    if condition:
        op["ConditionExpression"] = condition
    return {"Put": op}


def _value(name: str, pk: str) -> str | None:
    item = boto3.client("dynamodb").get_item(TableName=name, Key={"pk": {"S": pk}, "sk": {"S": "x"}}).get("Item")
    return item["v"]["S"] if item else None


def test_cancelled_transaction_leaves_every_item_as_it_was(table: str) -> None:
    ddb = boto3.client("dynamodb")
    ddb.transact_write_items(TransactItems=[_put(table, "a", "a1"), _put(table, "b", "b1")])
    for i in range(200):  # a table with history: the old code copied all of it on every call
        ddb.put_item(TableName=table, Item={"pk": {"S": f"filler{i}"}, "sk": {"S": "x"}, "v": {"S": "f"}})
    with pytest.raises(ClientError) as failed:
        ddb.transact_write_items(
            TransactItems=[
                _put(table, "a", "a2"),  # would succeed on its own ...
                _put(table, "new", "n1"),
                _put(table, "b", "b2", "attribute_not_exists(pk)"),  # ... but this one fails: b exists
            ]
        )
    assert failed.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert (_value(table, "a"), _value(table, "b"), _value(table, "new")) == ("a1", "b1", None)
    assert _value(table, "filler7") == "f"

    ddb.transact_write_items(TransactItems=[_put(table, "a", "a3"), _put(table, "c", "c1", "attribute_not_exists(pk)")])
    assert (_value(table, "a"), _value(table, "c")) == ("a3", "c1")


def test_queries_run_beside_concurrent_writes_without_errors_and_see_whole_items(table: str) -> None:
    """Queries walk a snapshot of the items (taken under moto's lock) and sort them with the patched keys.
    Writers racing readers must neither break a query (a dict changing size mid-walk) nor show half an item."""
    import threading

    ddb = boto3.client("dynamodb")
    stop, errors, written = threading.Event(), [], [0]

    def write() -> None:
        client = boto3.client("dynamodb")
        while not stop.is_set():
            i = written[0]
            try:
                client.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"S": f"{i:06d}"}, "v": {"S": str(i)}})
                client.put_item(TableName=table, Item={"pk": {"S": f"other-{i}"}, "sk": {"S": "x"}, "v": {"S": "y"}})
            except ClientError as exc:  # pragma: no cover - the failure this test exists for
                errors.append(exc)
            written[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        seen = []
        while written[0] < 150:
            items = ddb.query(
                TableName=table,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": "p"}},
            )["Items"]
            assert [it["sk"]["S"] for it in items] == sorted(it["sk"]["S"] for it in items)
            assert all(it["v"]["S"] == str(int(it["sk"]["S"])) for it in items)  # whole items only
            seen.append(len(items))
    finally:
        stop.set()
        writer.join(30)
    assert errors == [] and len(seen) > 1 and seen == sorted(seen)  # each query sees at least what the last did


def test_fast_sort_keys_order_like_moto_dynamo_types() -> None:
    """The patched sorts compare plain values; they must put S, N and B keys in moto's own order."""
    import base64
    import functools
    import random

    from moto.dynamodb.models.dynamo_type import DynamoType

    from rag_autotune.local.moto_fixes import _fast_sort_key

    rng = random.Random(5)
    numbers = ["-1e3", "-2.5", "0", "1", "1.0000001", "10", "9.99", "1795616903.7641", "123456789012345678"]
    strings = ["", "A", "a", "V#1", "V#10", "V#2", "Q#abc", "é", "z", "ü"]
    blobs = [base64.b64encode(bytes(rng.randrange(256) for _ in range(rng.randrange(5)))).decode() for _ in range(20)]
    for kind, values in (("N", numbers), ("S", strings), ("B", blobs)):
        typed = [DynamoType({kind: v}) for v in values]
        rng.shuffle(typed)

        def moto_order(a: DynamoType, b: DynamoType) -> int:
            return -1 if a < b else (1 if b < a else 0)

        expected = [t.value for t in sorted(typed, key=functools.cmp_to_key(moto_order))]
        assert [t.value for t in sorted(typed, key=_fast_sort_key)] == expected, kind


def test_s3_events_reach_a_pattern_rule_behind_a_schedule_rule_and_deletes_notify(moto_url: str) -> None:
    """A schedule rule created first must not swallow S3 events (moto offers them to every rule and stops at
    the first that raises), and a delete in a versioned bucket notifies as on AWS."""
    suffix = uuid.uuid4().hex[:8]
    s3, sqs, events = boto3.client("s3"), boto3.client("sqs"), boto3.client("events")
    bucket = f"fixes-{suffix}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    events.put_rule(Name=f"a-schedule-{suffix}", ScheduleExpression="rate(1 day)")
    machine = f"arn:aws:states:us-east-1:123456789012:stateMachine:nowhere-{suffix}"
    events.put_targets(Rule=f"a-schedule-{suffix}", Targets=[{"Id": "sm", "Arn": machine}])
    queue = sqs.create_queue(QueueName=f"fixes-{suffix}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {
        "source": ["aws.s3"],
        "detail-type": ["Object Created", "Object Deleted"],
        "detail": {"bucket": {"name": [bucket]}},
    }
    events.put_rule(Name=f"b-docs-{suffix}", EventPattern=json.dumps(pattern))
    events.put_targets(Rule=f"b-docs-{suffix}", Targets=[{"Id": "q", "Arn": arn}])

    s3.put_object(Bucket=bucket, Key="docs/a.md", Body=b"a")
    s3.delete_object(Bucket=bucket, Key="docs/a.md")
    bodies = [
        json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    ]
    assert [(b["detail-type"], b["detail"]["object"]["key"]) for b in bodies] == [
        ("Object Created", "docs/a.md"),
        ("Object Deleted", "docs/a.md"),
    ]


@pytest.fixture
def indexed(moto_url: str) -> str:
    """The FeedbackTable's shape: pk/sk, and gsi1 (gsi1pk S, gsi1sk N) over the votes only."""
    name = f"fixes-gsi-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": t}
            for n, t in (("pk", "S"), ("sk", "S"), ("gsi1pk", "S"), ("gsi1sk", "N"))
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _pages(call, **kwargs) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    items: list[dict] = []  # type: ignore[type-arg]
    while True:
        resp = call(**kwargs)
        items += resp["Items"]
        if "LastEvaluatedKey" not in resp:
            return items
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def test_queries_see_only_their_keys_items_and_page_like_moto(indexed: str) -> None:
    """Query is handed only the items its key condition can match (local/moto_fixes._query_candidates): the
    answers, their order and their pages must be those of the whole table's walk."""
    ddb = boto3.client("dynamodb")
    for i in range(120):  # votes under two query ids, query-log items, a vote index bucket of another name
        ddb.put_item(
            TableName=indexed,
            Item={
                "pk": {"S": f"Q#{i % 2}"},
                "sk": {"S": f"V#{i:03d}"},
                "gsi1pk": {"S": "VOTE" if i % 5 else "OTHER"},
                "gsi1sk": {"N": str(1000 + (i * 7) % 120)},  # not in insertion order
            },
        )
        ddb.put_item(TableName=indexed, Item={"pk": {"S": f"Q#log{i}"}, "sk": {"S": "Q"}})
    votes = _pages(
        ddb.query,
        TableName=indexed,
        IndexName="gsi1",
        KeyConditionExpression="gsi1pk = :p AND gsi1sk > :since",
        ExpressionAttributeValues={":p": {"S": "VOTE"}, ":since": {"N": "1050"}},
        Limit=7,
    )
    expected = sorted((1000 + (i * 7) % 120, f"V#{i:03d}") for i in range(120) if i % 5 and 1000 + (i * 7) % 120 > 1050)
    assert [(int(v["gsi1sk"]["N"]), v["sk"]["S"]) for v in votes] == expected
    backwards = _pages(
        ddb.query,
        TableName=indexed,
        KeyConditionExpression="pk = :p AND begins_with(sk, :v)",
        ExpressionAttributeValues={":p": {"S": "Q#1"}, ":v": {"S": "V#"}},
        ScanIndexForward=False,
        Limit=9,
    )
    assert [v["sk"]["S"] for v in backwards] == sorted((f"V#{i:03d}" for i in range(1, 120, 2)), reverse=True)
    assert (
        ddb.query(
            TableName=indexed, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "Q#none"}}
        )["Items"]
        == []
    )


def test_a_paginated_scan_returns_every_item_once_in_order_and_unshared(indexed: str) -> None:
    """Scan pages start at their ExclusiveStartKey by bisection and skip moto's deep copies: every item once,
    in key order, also when writes land between pages; projections still leave the stored items whole."""
    ddb = boto3.client("dynamodb")
    for i in range(150):
        ddb.put_item(TableName=indexed, Item={"pk": {"S": f"p{i % 13}"}, "sk": {"S": f"{i:04d}"}, "v": {"S": "x"}})
    first = ddb.scan(TableName=indexed, Limit=40)
    ddb.put_item(TableName=indexed, Item={"pk": {"S": "zz-late"}, "sk": {"S": "0"}, "v": {"S": "x"}})
    rest = _pages(ddb.scan, TableName=indexed, Limit=40, ExclusiveStartKey=first["LastEvaluatedKey"])
    keys = [(it["pk"]["S"], it["sk"]["S"]) for it in first["Items"] + rest]
    assert len(keys) == len(set(keys)) == 151 and keys == sorted(keys)
    projected = ddb.scan(TableName=indexed, ProjectionExpression="pk, sk")["Items"]
    assert all("v" not in it for it in projected)
    assert all(it["v"]["S"] == "x" for it in _pages(ddb.scan, TableName=indexed))
