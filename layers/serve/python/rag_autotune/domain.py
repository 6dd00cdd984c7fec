"""Domain values. Plain, frozen dataclasses: no I/O, no SDK types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

VoteKind = Literal["up", "down"]
# How an index version is queried: dense vectors only, or dense and BM25 prefetches fused by the engine.
RetrievalMode = Literal["dense", "hybrid-rrf", "hybrid-dbsf"]
RETRIEVAL_MODES: tuple[RetrievalMode, ...] = ("dense", "hybrid-rrf", "hybrid-dbsf")
# How /ask queries a corpus's first version, before any tune run's smoke step has chosen from votes: fused with
# BM25, which helped never-asked questions on both development corpora without any training (`make
# bench-ablation`). A corpus BM25 cannot rank gets a dense-only version whatever this says (ingest.write_version).
FIRST_MODE: RetrievalMode = "hybrid-dbsf"


PUBLIC_TENANT = "public"  # no API key: one shared tenant


def normalise(query: str) -> str:
    """The key a question is known by: the same words, whatever their case and spacing, are one question (the
    feedback memory remembers it once, the tune groups its votes and splits train/held-out by it)."""
    return " ".join(query.lower().split())


@dataclass(frozen=True)
class VersionPair:
    """The one thing a response is computed from: an encoder and the vectors that encoder made."""

    model_version: str
    index_version: str

    def as_dict(self) -> dict[str, str]:
        return {"model_version": self.model_version, "index_version": self.index_version}


@dataclass(frozen=True)
class Manifest:
    """The live pointer (manifest.json in S3). `previous` is newest first, for rollback."""

    live: VersionPair
    previous: tuple[VersionPair, ...] = ()
    updated_at: str = ""
    reason: str = ""
    documents: int = 0  # of the live index, so /health needs no scan
    chunks: int = 0

    @property
    def named_versions(self) -> set[str]:
        """Every model and index version the pointer names (live and rollback targets): never to be deleted."""
        return {v for p in (self.live, *self.previous) for v in (p.model_version, p.index_version)}


SECTION_SEP = " › "  # between the headings of a section path: "Install › Docker"


@dataclass(frozen=True)
class Part:
    """A stretch of a document that no chunk may cross: a PDF page, a Markdown section."""

    text: str
    page: int = 0  # 1-based PDF page; 0: not paged
    section: str = ""  # heading path, SECTION_SEP between headings


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str
    url: str = ""  # where a citation links to (an HTML page's canonical URL); "" when none
    parts: tuple[Part, ...] = ()  # empty: the whole text is one part


@dataclass(frozen=True)
class Chunk:
    chunk_id: str  # "<doc_id>#<n>": stable across re-ingests of the same text
    doc_id: str
    title: str  # the document's title, then the section path when there is one
    text: str
    url: str = ""
    page: int = 0
    section: str = ""


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float


@dataclass(frozen=True)
class Found:
    """One index query's hits, best first, and the mode that answered it: a hybrid query falls back to dense
    when the version has no BM25 vectors or the query has no BM25 term; `reason` says which."""

    hits: list[Hit]
    mode: RetrievalMode
    reason: str = ""
    steered: bool = False  # the votes of related questions steered the dense search (steering.py)


@dataclass(frozen=True)
class IndexStats:
    """corpus/<index version>/stats.json: counts for /health, and how /ask queries the version (the smoke step
    chooses; a version written before hybrid retrieval existed reads as dense)."""

    documents: int
    chunks: int
    mode: RetrievalMode = "dense"
    mode_reason: str = ""


@dataclass(frozen=True)
class Citation:
    doc_id: str
    chunk_id: str
    title: str
    snippet: str
    score: float
    rank: int  # 1-based
    boosted: bool = False  # the feedback memory changed this document's score
    url: str = ""  # the cited chunk's link, "" when it has none
    page: int = 0  # the cited chunk's PDF page, 0 when not paged
    rerank_score: float | None = None  # the reranking model's relevance, when it ordered this answer


@dataclass(frozen=True)
class QueryLog:
    """What /ask showed, kept so that a vote can be checked and turned into training data."""

    query_id: str
    query: str
    pair: VersionPair
    citations: tuple[Citation, ...]
    created_at: float  # epoch seconds
    client_id: str = "anonymous"
    # The query's vector from pair.model_version, packed (memory.pack_vector: float16): votes on this query
    # reach the feedback memory without re-encoding. b"" when not logged.
    embedding: bytes = b""
    tenant: str = PUBLIC_TENANT  # who may vote on it: the API key that asked (see http_api.Guard.tenant_of)


def voter_id(user_id: str | None, client_id: str) -> str:
    """Who cast a vote, for dedupe and the feedback memory's per-voter caps."""
    return f"user:{user_id}" if user_id else f"client:{client_id}"


@dataclass(frozen=True)
class Vote:
    query_id: str
    doc_id: str
    chunk_id: str
    vote: VoteKind
    rank: int
    query: str
    pair: VersionPair
    created_at: float
    user_id: str | None = None
    client_id: str = "anonymous"
    comment: str | None = None
    embedding: bytes = b""  # the query's vector from pair.model_version: only votes stored before query ids were signed

    @property
    def voter(self) -> str:
        return voter_id(self.user_id, self.client_id)


RerankStatus = Literal["off", "applied", "skipped"]


@dataclass(frozen=True)
class RerankReport:
    """What the optional reranking step did for one answer. `skipped`: the model was configured but did not
    answer (throttled, timed out, refused), so the citations keep the retriever's and the memory's order."""

    status: RerankStatus = "off"
    model: str | None = None
    reason: str | None = None  # when skipped: throttled, timeout, unavailable, paused


@dataclass(frozen=True)
class Timings:
    encode_ms: float
    search_ms: float
    generate_ms: float
    total_ms: float
    rerank_ms: float = 0.0  # its own figure: a network call, kept out of the retrieval (encode + search) one


@dataclass(frozen=True)
class Answer:
    query_id: str  # signed, and it holds the question (query_token.py): logs carry log_id instead
    answer: str
    pair: VersionPair
    citations: tuple[Citation, ...]
    timings: Timings
    rerank: RerankReport = RerankReport()
    mode: RetrievalMode = "dense"  # the retrieval mode that answered
    steered: bool = False  # votes on related questions steered the search
    log_id: str = ""  # the query's short id, inside query_id: what votes and logs name it by


@dataclass
class IngestReport:
    index_version: str
    model_version: str
    documents: int
    chunks: int
    errors: list[str] = field(default_factory=list)  # "<name>: <why it was skipped>", one per skipped input
    embedded: int = 0  # chunks whose vector this ingest computed
    reused: int = 0  # chunks whose vector came from the live version (same text, same model)
    changed: bool = True  # False: the change left every chunk as it was; no version built, the pointer stayed


ExecutionStatus = Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]


@dataclass(frozen=True)
class Execution:
    """One workflow execution as `Workflows.describe` sees it: `output` once SUCCEEDED, `error` and `cause`
    once it failed."""

    status: ExecutionStatus
    output: dict[str, Any] | None = None
    error: str | None = None
    cause: str | None = None
