"""FeedbackStore contract: the same assertions against the in-memory fake and DynamoFeedbackStore on moto's
server, with the table built from template.yaml."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import boto3
import numpy as np
import pytest

from rag_autotune.adapters.aws import CLIENT_CONFIG
from rag_autotune.adapters.dynamodb import DynamoFeedbackStore
from rag_autotune.domain import VersionPair, Vote
from rag_autotune.errors import UpstreamError
from rag_autotune.local.resources import ensure_table, load_template, table_spec
from rag_autotune.memory import pack_vector, unpack_vector
from rag_autotune.ports import FeedbackStore
from tests.fakes import MemoryFeedbackStore

T0 = 1_700_000_000.5  # exactly representable, so T0 + W - W == T0
W = 3600
PAIR = VersionPair("model-v1", "index-v1")


@pytest.fixture(scope="module")
def dynamodb_client(moto_url: str) -> Any:
    """One client per module: building a boto3 client costs ~0.3 s."""
    return boto3.session.Session().client(
        "dynamodb", region_name="us-east-1", endpoint_url=moto_url, config=CLIENT_CONFIG
    )


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> FeedbackStore:
    if request.param == "memory":
        return MemoryFeedbackStore()
    unique: str = request.getfixturevalue("unique")
    client = request.getfixturevalue("dynamodb_client")
    table = f"rag-contract-{unique}"
    ensure_table(client, table, table_spec(load_template()))
    return DynamoFeedbackStore(client, table)


def _vote(created_at: float = T0, **kw: Any) -> Vote:
    base = Vote(
        query_id="q1",
        doc_id="doc-a",
        chunk_id="doc-a#0",
        vote="up",
        rank=1,
        query="how do I open a file?",
        pair=PAIR,
        created_at=created_at,
    )
    return replace(base, **kw)


def test_a_votes_query_vector_round_trips(store: FeedbackStore) -> None:
    """Votes stored with their query's vector (before query ids were signed) reach the memory byte for byte."""
    emb = pack_vector(np.linspace(-1.0, 1.0, 384, dtype=np.float32))
    vote = _vote(T0, query_id="q-emb", embedding=emb)
    plain = _vote(T0 + 1, query_id="q-plain")
    assert store.record_vote(vote, "q-emb|open.2|up", W) and store.record_vote(plain, "q-plain|open.2|up", W)
    votes = store.votes()
    assert votes == [vote, plain] and votes[0].embedding == emb and votes[1].embedding == b""
    assert np.allclose(unpack_vector(votes[0].embedding), np.linspace(-1.0, 1.0, 384), atol=1e-3)
    assert store.votes(since=T0) == [plain]


def test_duplicate_within_window(store: FeedbackStore) -> None:
    first = _vote(T0, user_id="u1", comment="great")
    assert store.record_vote(first, "q1|doc-a|up", W) is True
    assert store.record_vote(_vote(T0 + 1), "q1|doc-a|up", W) is False
    assert store.record_vote(_vote(T0 + W - 1), "q1|doc-a|up", W) is False
    assert store.votes() == [first]


def test_same_key_after_window_records_again(store: FeedbackStore) -> None:
    assert store.record_vote(_vote(T0), "k", W) is True
    assert store.record_vote(_vote(T0 + W + 1), "k", W) is True
    # The window restarts from the vote just recorded, not from the first one.
    assert store.record_vote(_vote(T0 + W + 2), "k", W) is False
    assert store.record_vote(_vote(T0 + 2 * W + 1), "k", W) is True
    assert [v.created_at for v in store.votes()] == [T0, T0 + W + 1, T0 + 2 * W + 1]


def test_window_boundary_is_not_a_duplicate(store: FeedbackStore) -> None:
    """'recorded less than window_s ago' is a duplicate; exactly window_s ago is not."""
    assert store.record_vote(_vote(T0), "k", W) is True
    assert store.record_vote(_vote(T0 + W), "k", W) is True


def test_different_keys_are_independent(store: FeedbackStore) -> None:
    up = _vote(T0)
    down = _vote(T0 + 1, vote="down")
    other_doc = _vote(T0 + 2, doc_id="doc-b", chunk_id="doc-b#3", rank=2)
    assert store.record_vote(up, "q1|doc-a|up", W) is True
    assert store.record_vote(down, "q1|doc-a|down", W) is True
    assert store.record_vote(other_doc, "q1|doc-b|up", W) is True
    assert store.votes() == [up, down, other_doc]


def test_votes_order_filter_and_limit(store: FeedbackStore) -> None:
    offsets = [50, 10, 30, 20, 40]
    recorded = {}
    for i, off in enumerate(offsets):
        v = _vote(
            T0 + off + 0.123456,
            query_id=f"q{i}",
            user_id=None if i % 2 else f"user-{i}",
            comment=None if i % 2 else f"comment {i}",
            client_id=f"client-{i}",
        )
        assert store.record_vote(v, f"q{i}|doc-a|up", W) is True
        recorded[off] = v
    ordered = [recorded[o] for o in sorted(offsets)]
    assert store.votes() == ordered
    assert store.votes(since=None, limit=2) == ordered[:2]
    assert store.votes(since=ordered[1].created_at) == ordered[2:]  # strictly after
    assert store.votes(since=ordered[1].created_at, limit=1) == ordered[2:3]
    assert store.votes(since=ordered[-1].created_at) == []
    assert store.votes(since=T0) == ordered


def test_concurrent_votes_same_key_exactly_one(store: FeedbackStore) -> None:
    barrier = threading.Barrier(8)
    results: list[bool] = []
    errors: list[BaseException] = []

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            results.append(store.record_vote(_vote(T0, comment=f"thread {i}"), "q1|doc-a|up", W))
        except BaseException as exc:  # pragma: no cover - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [False] * 7 + [True]
    assert len(store.votes()) == 1


# ---- DynamoDB-only: the item layout template.yaml's table is designed for, and error mapping ------------


def test_dynamodb_item_layout(dynamodb_client: Any, unique: str) -> None:
    table = f"rag-layout-{unique}"
    ensure_table(dynamodb_client, table, table_spec(load_template()))
    store = DynamoFeedbackStore(dynamodb_client, table)
    assert store.record_vote(_vote(T0), "q1|d|up", W)

    items = dynamodb_client.scan(TableName=table)["Items"]
    by_sk = {i["sk"]["S"].split("#")[0]: i for i in items}
    assert set(by_sk) == {"V", "D"}  # /ask writes nothing: what it showed is in the signed query id
    vote, marker = by_sk["V"], by_sk["D"]
    assert vote["pk"] == {"S": "Q#q1"} and vote["sk"]["S"].startswith("V#1700000000.500000#")
    assert vote["gsi1pk"] == {"S": "VOTE"} and float(vote["gsi1sk"]["N"]) == T0
    assert "expires_at" not in vote and "user_id" not in vote  # None is omitted, votes are kept
    assert "embedding" not in vote  # stored only when there is one
    assert marker["pk"] == {"S": "D#q1|d|up"} and float(marker["last_at"]["N"]) == T0
    assert int(marker["expires_at"]["N"]) >= T0 + W


def test_dynamodb_other_errors_are_upstream(dynamodb_client: Any, unique: str) -> None:
    gone = DynamoFeedbackStore(dynamodb_client, f"rag-missing-{unique}")
    for call in (
        lambda: gone.record_vote(_vote(), "k", W),
        lambda: gone.votes(),
    ):
        with pytest.raises(UpstreamError) as info:
            call()
        assert info.value.__cause__ is not None
