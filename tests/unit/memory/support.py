"""Fakes, clocks and vote helpers shared by the feedback memory tests."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from rag_autotune.ask import ask
from rag_autotune.domain import Citation, QueryLog, VersionPair, Vote
from rag_autotune.feedback import record_feedback
from rag_autotune.generate import ExtractiveGenerator
from rag_autotune.ingest import ingest
from rag_autotune.live import LiveState
from rag_autotune.memory import MemoryParams, MemoryVote, open_live_memory, pack_vector
from tests.fakes import TOKENS, HashEncoder, MemoryArtifactStore, MemoryFeedbackStore, MemoryVectorIndex

T0 = float(int(time.time()) - 3600)  # recent: the smoke step reads the votes of the last 90 days
P = MemoryParams(threshold=0.9, weight=1.0, half_life_days=7.0, client_daily_cap=3, max_penalty=0.9)
DOCS = [
    ("pipe.2", "pipe(2)", "pipe creates a pipe, a unidirectional data channel with two file descriptors."),
    ("open.2", "open(2)", "open opens the file specified by pathname and may create it."),
    ("malloc.3", "malloc(3)", "malloc allocates size bytes of memory and returns a pointer."),
    ("fifo.7", "fifo(7)", "a fifo special file is a named pipe, a data channel between processes."),
    ("socketpair.2", "socketpair(2)", "create a pair of connected sockets, a data channel for processes."),
]


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class CountingEncoder(HashEncoder):
    def __init__(self, version: str = "v0", dim: int = 64) -> None:
        super().__init__(version, dim)
        self.texts: list[str] = []

    def encode(self, texts: Any) -> Any:
        self.texts.extend(texts)
        return super().encode(texts)


class SpyFeedback(MemoryFeedbackStore):
    def __init__(self) -> None:
        super().__init__()
        self.since: list[float | None] = []

    def votes(self, since: float | None = None, limit: int = 10_000) -> list[Vote]:
        self.since.append(since)
        return super().votes(since, limit)


def vec(text: str, version: str = "v0", dim: int = 64) -> Any:
    return HashEncoder(version, dim).encode([text])[0]


def mv(query: str, doc: str, voter: str = "a", up: bool = True, t: float = T0) -> MemoryVote:
    return MemoryVote(query, doc, voter, up, t)


def log_vote(fb: MemoryFeedbackStore, q: str, doc: str, kind: str, t: float, *, model: str = "v0", **kw: Any) -> None:
    """A vote on `doc` for a query `q` that showed it, as /feedback records it (no query vector)."""
    model = model or "v0"
    client = kw.get("client_id", "c1")
    cited = (Citation(doc, f"{doc}#0", doc, "", 0.5, 1),)
    shown = TOKENS.issue(QueryLog(uuid.uuid4().hex, q, VersionPair(model, f"{model}-c1"), cited, t, client))
    vote_on(fb, shown, doc, kind, user_id=kw.get("user_id"), client_id=client, at=t)


def stored_vote(
    fb: MemoryFeedbackStore, q: str, doc: str, kind: str, t: float, *, model: str, voter: str, dim: int = 64
) -> None:
    """A vote as stored before query ids were signed: it carries its query's vector from `model`."""
    pair = VersionPair(model, f"{model}-c1")
    embedding = pack_vector(vec(q, model, dim))
    vote = Vote(uuid.uuid4().hex, doc, f"{doc}#0", kind, 1, q, pair, t, client_id=voter, embedding=embedding)  # type: ignore[arg-type]
    fb.record_vote(vote, f"{voter}|{vote.query_id}|{doc}|{kind}", 3600)


def vote_on(
    fb: MemoryFeedbackStore,
    query_id: str,
    doc: str,
    kind: str,
    *,
    user_id: str | None = None,
    client_id: str = "c1",
    at: float = T0 + 1,
) -> None:
    """A vote through /feedback's logic, as a user would cast it."""
    record_feedback(
        fb,
        TOKENS,
        query_id=query_id,
        doc_id=doc,
        vote=kind,  # type: ignore[arg-type]
        user_id=user_id,
        client_id=client_id,
        comment=None,
        window_s=3600,
        now=lambda: at,
    )


def make_world(tmp_path: Path) -> dict[str, Any]:
    store, index, fb = MemoryArtifactStore(), MemoryVectorIndex(), MemoryFeedbackStore()
    store.put_bytes("models/v0/meta.json", b"{}")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps({"id": i, "title": t, "text": x}) for i, t, x in DOCS))
    encoders: dict[str, HashEncoder] = {"v0": HashEncoder("v0"), "v1": HashEncoder("v1", dim=32)}
    ingest(corpus, store=store, index=index, load_encoder=encoders.__getitem__)
    wall = Clock()
    live = LiveState(
        store,
        index,
        encoders.__getitem__,
        ttl_s=0,
        load_memory=lambda enc: open_live_memory(store, fb, enc, P, refresh_s=0, background=False, clock=wall),
    )
    return {"store": store, "index": index, "fb": fb, "live": live, "encoders": encoders, "wall": wall}


def ask_as(w: dict[str, Any], query: str, client: str = "c1", top_k: int = 3) -> Any:
    return ask(query, top_k, w["live"].current(), TOKENS, ExtractiveGenerator(), client_id=client, now=w["wall"])
