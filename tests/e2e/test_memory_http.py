"""Issue 7 over HTTP on the embedded default: /ask logs the query vector in DynamoDB, a vote carries it, and the
next /ask is re-ranked by the feedback memory with `boosted` citations. Queries and votes go to a table of this
module's own (the tune loop counts the session table's votes), and the served app gets a LiveState whose memory
reads only that table (no snapshot) and refreshes on every request (RAG_MEMORY_REFRESH_S=0)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from types import SimpleNamespace

import pytest

from rag_autotune.adapters.dynamodb import DynamoFeedbackStore
from rag_autotune.ask import OVERSAMPLE
from rag_autotune.live import LiveState
from rag_autotune.local.resources import ensure_table, load_template, table_spec
from rag_autotune.memory import MemoryParams, open_live_memory
from tests.fakes import MemoryArtifactStore
from tests.http_client import call


@pytest.fixture
def served(stack: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    rt = stack.app.runtime
    table = f"e2e-memory-{uuid.uuid4().hex[:8]}"
    ensure_table(rt.feedback._ddb, table, table_spec(load_template()))
    fb = DynamoFeedbackStore(rt.feedback._ddb, table)
    params = MemoryParams.from_settings(rt.settings)
    live = LiveState(
        rt.store,
        rt.index,
        rt.load_encoder,
        ttl_s=0,
        # No snapshot store: a tune run earlier in the session ships one beside its model (the session table's
        # votes), and this test's memory must know only the votes it casts.
        load_memory=lambda enc: open_live_memory(MemoryArtifactStore(), fb, enc, params, refresh_s=0, background=False),
    )
    monkeypatch.setattr(rt, "feedback", fb)
    monkeypatch.setattr(rt, "live", live)
    return SimpleNamespace(table=table, ddb=fb._ddb, live=live)


def test_votes_rerank_the_next_answer_over_http(stack: SimpleNamespace, served: SimpleNamespace) -> None:
    q = {"query": "create a pipe for interprocess communication", "top_k": 10}
    first = call(stack.url + "/ask", "POST", q).json
    assert len(first["citations"]) == 10 and not any(c["boosted"] for c in first["citations"])
    assert served.ddb.scan(TableName=served.table)["Items"] == []  # /ask wrote nothing: its id is the record

    # Three 👎 on the top document push it down by max_penalty (the cap binds: 3 x weight is far more), counted in
    # spreads of the re-ranked candidates' scores (memory.rerank). Set the cap so the document lands midway
    # between two neighbours, at rank r > 1: the second answer must then cite it exactly there, marked boosted.
    scores = [c["score"] for c in first["citations"]]
    r = max(range(2, 6), key=lambda i: scores[i - 1] - scores[i])  # the widest gap below ranks 2-5
    assert scores[r - 1] - scores[r] > 1e-4, scores
    penalty = scores[0] - (scores[r - 1] + scores[r]) / 2
    live = served.live.current()
    memory = live.memory
    assert memory is not None
    depth = max(q["top_k"] * OVERSAMPLE, memory.depth)  # what /ask re-ranks once votes move a document
    vector = live.encoder.encode([q["query"]])[0]
    best: dict[str, float] = {}
    for hit in live.index.query(live.pair.index_version, vector, q["query"], depth, live.mode).hits:
        best.setdefault(hit.chunk.doc_id, hit.score)
    spread = max(best.values()) - min(best.values())
    assert 3 * memory.memory.params.weight > penalty / spread
    memory.memory.params = replace(memory.memory.params, max_penalty=penalty / spread)
    top = first["citations"][0]["doc_id"]
    for user in ("alice", "bob", "carol"):
        vote = {"query_id": first["query_id"], "doc_id": top, "vote": "down", "user_id": user}
        assert call(stack.url + "/feedback", "POST", vote).status == 201
    votes = served.ddb.query(
        TableName=served.table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :v)",
        ExpressionAttributeValues={
            ":pk": {"S": f"Q#{stack.app.runtime.query_tokens.read(first['query_id']).query_id}"},
            ":v": {"S": "V#"},
        },
    )["Items"]
    assert len(votes) == 3 and not any("embedding" in v for v in votes)  # the memory encodes the query once

    again = call(stack.url + "/ask", "POST", q).json  # the memory refreshes before answering
    assert again["model_version"] == first["model_version"]
    assert again["citations"][0]["doc_id"] == first["citations"][1]["doc_id"]
    (demoted,) = [c for c in again["citations"] if c["doc_id"] == top]
    assert demoted["boosted"] and demoted["rank"] == r
    assert demoted["score"] == pytest.approx(scores[0] - penalty, abs=1e-5)
    assert not any(c["boosted"] for c in again["citations"] if c["doc_id"] != top)
    memory = served.live.current().memory
    assert memory is not None and memory.model_version == again["model_version"] and len(memory.memory) == 3
    assert memory.encoded == 1  # the voted query, once (three votes on it)
