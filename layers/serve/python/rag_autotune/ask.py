"""/ask: encode with the live encoder, search the same pair's index (steered by the votes of related questions
when the pair's memory has a fitted steering, steering.py), let the pair's feedback memory re-rank
(votes on near-identical queries, memory/), keep the best chunk per document, optionally rerank the first ones
with a relevance model (reranking.py), generate, and sign what was shown into the query id (query_token.py):
a vote on it is checked against that record and becomes tomorrow's training data and the memory's input."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from .domain import PUBLIC_TENANT, Answer, Citation, Hit, QueryLog, RerankReport, RetrievalMode, Timings, VersionPair
from .generate import Generator, Passage, best_sentence
from .live import LivePair
from .memory import rerank
from .query_token import QueryTokens
from .reranking import NO_RERANK, Ranked, RerankStep

# Chunks fetched per cited document: several chunks of one document must not crowd out the others.
OVERSAMPLE = 4


def citations_from_hits(
    query: str, hits: Sequence[Hit], top_k: int, boosts: Mapping[str, float] | None = None
) -> tuple[Citation, ...]:
    """Best chunk per document, in score order, at most top_k. With boosts (the feedback memory's), documents
    are re-ranked on score + boost, and the citations whose score the memory changed say `boosted`."""
    return citations_from_ranked(query, rerank(hits, boosts or {}), top_k, boosts or {})


def citations_from_ranked(
    query: str,
    ranked: Ranked,
    top_k: int,
    boosts: Mapping[str, float],
    rerank_scores: Mapping[str, float] | None = None,
) -> tuple[Citation, ...]:
    rerank_scores = rerank_scores or {}
    out: list[Citation] = []
    for hit, score in ranked[:top_k]:
        out.append(
            Citation(
                doc_id=hit.chunk.doc_id,
                chunk_id=hit.chunk.chunk_id,
                title=hit.chunk.title,
                snippet=best_sentence(query, hit.chunk.text, max_chars=240) or hit.chunk.text[:240],
                score=round(score, 6),
                rank=len(out) + 1,
                boosted=hit.chunk.doc_id in boosts,
                url=hit.chunk.url,
                page=hit.chunk.page,
                rerank_score=rerank_scores.get(hit.chunk.doc_id),
            )
        )
    return tuple(out)


@dataclass
class Retrieval:
    """Everything decided before generation: used by both the JSON and the streaming answer."""

    query_id: str
    query: str
    pair: VersionPair
    citations: tuple[Citation, ...]
    passages: tuple[Passage, ...]
    encode_ms: float
    search_ms: float
    started: float
    rerank: RerankReport = RerankReport()
    rerank_ms: float = 0.0
    mode: RetrievalMode = "dense"  # the mode that answered: the pair's, or dense when hybrid fell back
    steered: bool = False  # votes on related questions steered the search


def retrieve(
    query: str,
    top_k: int,
    live: LivePair,
    *,
    reranking: RerankStep = NO_RERANK,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> Retrieval:
    started = time.perf_counter()
    memory = live.memory if live.memory is not None and (live.memory.enabled or live.memory.steering) else None
    if memory is not None:
        memory.maybe_refresh()  # new votes, at most every refresh_s (one time-ordered query; errors logged)
    before_encode = time.perf_counter()
    vector = live.encoder.encode([query])[0]
    encoded = time.perf_counter()
    # Boosts for near-identical questions, steering from related ones (steering.py): one search of the memory.
    boosts, steer = memory.lookup(vector) if memory is not None else ({}, None)
    # When votes move documents for this query, re-rank a wider candidate set, so that a demoted document's
    # replacement can surface. Most queries are near no voted one and keep the plain depth (and its cost).
    depth = max(top_k * OVERSAMPLE, memory.depth) if memory is not None and boosts else top_k * OVERSAMPLE
    if reranking.active:
        depth = max(depth, reranking.top_n * OVERSAMPLE)  # enough documents for the reranker to choose from
    found = live.index.query(live.pair.index_version, vector, query, depth, live.mode, steer)
    hits = found.hits
    searched = time.perf_counter()
    reranked = reranking.apply(query, rerank(hits, boosts))
    citations = citations_from_ranked(query, reranked.ranked, top_k, boosts, reranked.scores)
    texts = {h.chunk.chunk_id: h.chunk.text for h in hits}
    passages = tuple(Passage(c.rank, c.title, texts[c.chunk_id]) for c in citations)
    return Retrieval(
        query_id=new_id(),
        query=query,
        pair=live.pair,
        citations=citations,
        passages=passages,
        encode_ms=(encoded - before_encode) * 1000,
        search_ms=(searched - encoded) * 1000,
        started=started,
        rerank=reranked.report,
        rerank_ms=reranked.ms,
        mode=found.mode,
        steered=found.steered,
    )


def shown_id(r: Retrieval, tokens: QueryTokens, client_id: str, tenant: str, now: float) -> str:
    """The query id the answer carries: the signed record of what it showed (see query_token)."""
    return tokens.issue(QueryLog(r.query_id, r.query, r.pair, r.citations, now, client_id, tenant=tenant))


def ask(
    query: str,
    top_k: int,
    live: LivePair,
    tokens: QueryTokens,
    generator: Generator,
    *,
    client_id: str = "anonymous",
    tenant: str = PUBLIC_TENANT,
    now: Callable[[], float] = time.time,
    reranking: RerankStep = NO_RERANK,
) -> Answer:
    r = retrieve(query, top_k, live, reranking=reranking)
    gen_start = time.perf_counter()
    text = generator.answer(query, r.passages)
    gen_ms = (time.perf_counter() - gen_start) * 1000
    query_id = shown_id(r, tokens, client_id, tenant, now())
    total = (time.perf_counter() - r.started) * 1000
    timings = Timings(r.encode_ms, r.search_ms, gen_ms, total, r.rerank_ms)
    return Answer(query_id, text, r.pair, r.citations, timings, r.rerank, r.mode, r.steered, log_id=r.query_id)


def ask_stream(
    query: str,
    top_k: int,
    live: LivePair,
    tokens: QueryTokens,
    generator: Generator,
    *,
    client_id: str = "anonymous",
    tenant: str = PUBLIC_TENANT,
    now: Callable[[], float] = time.time,
    reranking: RerankStep = NO_RERANK,
) -> tuple[Retrieval, Iterator[str]]:
    """The retrieval (for the citations event; its query_id is the signed one) and the answer deltas."""
    r = retrieve(query, top_k, live, reranking=reranking)
    r = dataclasses.replace(r, query_id=shown_id(r, tokens, client_id, tenant, now()))
    return r, generator.stream(query, r.passages)
