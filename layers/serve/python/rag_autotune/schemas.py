"""API inputs and outputs. Strict: wrong types, unknown fields and out-of-range values are 4xx, never coerced.
openapi.py builds the published document from these models, so the two cannot drift."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .domain import RetrievalMode


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class AskRequest(_Strict):
    query: str = Field(min_length=1, max_length=2000, description="The question.")
    top_k: int = Field(5, ge=1, le=20, description="How many documents to cite.")
    stream: bool = Field(False, description="Answer as Server-Sent Events.")


class FeedbackRequest(_Strict):
    query_id: str = Field(min_length=1, max_length=8192)  # the signed record /ask returned (query_token.py)
    doc_id: str = Field(min_length=1, max_length=512)
    vote: Literal["up", "down"]
    user_id: str | None = Field(None, min_length=1, max_length=128)
    comment: str | None = Field(None, max_length=1000)


class CitationOut(BaseModel):
    doc_id: str
    chunk_id: str
    title: str
    snippet: str
    score: float = Field(description="Retrieval score, plus the feedback memory's boost when `boosted`.")
    rank: int
    boosted: bool = Field(
        description="The feedback memory (votes on near-identical queries) changed this document's score."
    )
    url: str | None = Field(None, description="The cited page's link (an HTML page's canonical URL), when known.")
    page: int | None = Field(None, description="The cited PDF page (1-based), when the document is a PDF.")
    rerank_score: float | None = Field(
        description="The reranking model's relevance when it ordered this answer (`rerank.status` applied), "
        "else null. Citations are then in this order; `score` stays the retrieval score."
    )


class TimingsOut(BaseModel):
    encode: float
    search: float
    rerank: float = Field(description="The reranking call (0 when off); not part of encode + search.")
    generate: float
    total: float


class RerankOut(BaseModel):
    status: Literal["off", "applied", "skipped"] = Field(
        description="off: no reranking model is configured. applied: the citations are in the model's order. "
        "skipped: the model did not answer in time or at all; the citations keep the retrieval order."
    )
    model: str | None = Field(description="The reranking model's ARN, null when off.")
    reason: str | None = Field(
        description="When skipped: throttled, timeout, unavailable, or paused (a throttle or timeout moments ago: "
        "the model is left alone for RAG_RERANK_PAUSE_S)."
    )


class AskResponse(BaseModel):
    query_id: str
    answer: str
    model_version: str
    index_version: str
    retrieval_mode: RetrievalMode = Field(
        description="How the index answered: dense vectors only, or dense and BM25 fused by reciprocal rank "
        "(hybrid-rrf) or by distribution-based score fusion (hybrid-dbsf). A hybrid version answers dense when "
        "the question has no BM25 term (only stop words or punctuation)."
    )
    steered: bool = Field(
        description="True when the votes on related questions (within the steering radius fitted for this model) "
        "steered the dense search as relevance feedback; false otherwise."
    )
    citations: list[CitationOut]
    rerank: RerankOut
    timings_ms: TimingsOut


class FeedbackResponse(BaseModel):
    status: Literal["recorded", "duplicate"]


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]  # degraded: the manifest's newest pair failed to load; the last good one serves
    model_version: str
    index_version: str
    documents: int
    chunks: int
    reason: str | None = None


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
