"""/feedback: a vote is accepted only on a document that the named query actually showed (the query id is
the signed record of what it showed, query_token.py), and counted once per (voter, query, document, vote) per
dedupe window."""

from __future__ import annotations

import time
from collections.abc import Callable

from .domain import PUBLIC_TENANT, Vote, VoteKind, voter_id
from .errors import DocNotCited, UnknownQuery
from .ports import FeedbackStore
from .query_token import QueryTokens


def dedupe_key(voter: str, query_id: str, doc_id: str, vote: VoteKind) -> str:
    return "|".join((voter, query_id, doc_id, vote))


def record_feedback(
    store: FeedbackStore,
    tokens: QueryTokens,
    *,
    query_id: str,
    doc_id: str,
    vote: VoteKind,
    user_id: str | None,
    client_id: str,
    comment: str | None,
    window_s: int,
    tenant: str = PUBLIC_TENANT,
    now: Callable[[], float] = time.time,
) -> bool:
    """True when recorded, False when a duplicate within the window. A query asked under another tenant (API
    key) is answered exactly as an unknown one: a vote can't be attached to it, nor its existence learned."""
    shown = tokens.read(query_id)
    if shown.tenant != tenant:
        raise UnknownQuery(f"no query with id {shown.query_id!r}")
    cited = next((c for c in shown.citations if c.doc_id == doc_id), None)
    if cited is None:
        raise DocNotCited(f"document {doc_id!r} was not among the citations of query {shown.query_id!r}")
    voter = voter_id(user_id, client_id)
    entry = Vote(
        query_id=shown.query_id,
        doc_id=doc_id,
        chunk_id=cited.chunk_id,
        vote=vote,
        rank=cited.rank,
        query=shown.query,
        pair=shown.pair,
        created_at=now(),
        user_id=user_id,
        client_id=client_id,
        comment=comment,
    )  # no embedding: the memory encodes a voted query's text once, with its own encoder
    return store.record_vote(entry, dedupe_key(voter, shown.query_id, doc_id, vote), window_s)
