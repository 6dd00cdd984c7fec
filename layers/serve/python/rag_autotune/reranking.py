"""Optional reranking, after fusion and the feedback memory: the first top_n documents go to a Reranker (ports.py)
and come back in its order. When it does not answer (throttled, timed out, refused), the answer keeps the order
it had and says why: a slow or failing reranker may cost an answer its polish, never the answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .chunking import embed_text
from .domain import Hit, RerankReport
from .errors import RerankUnavailable
from .observability import logger
from .ports import Reranker

Ranked = list[tuple[Hit, float]]  # best chunk per document with its retrieval (+ memory) score, best first


class IdentityReranker:
    """Reranking off: every document keeps its place."""

    @property
    def model(self) -> str | None:
        return None

    def rerank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        return [(i, 0.0) for i in range(len(documents))]


@dataclass(frozen=True)
class Reranked:
    ranked: Ranked
    scores: dict[str, float] = field(default_factory=dict)  # doc_id → the model's relevance, when applied
    report: RerankReport = RerankReport()
    ms: float = 0.0


# A throttled or timed-out model is left alone this long: its questions are answered unreranked at once, instead
# of each waiting on the timeout or adding to the throttling.
PAUSE_ON = frozenset({"throttled", "timeout"})


@dataclass
class RerankStep:
    """One per process. Not frozen: it remembers until when a struggling model is paused."""

    reranker: Reranker = field(default_factory=IdentityReranker)
    top_n: int = 20
    clock: Callable[[], float] = time.monotonic
    pause_s: float = 30.0
    _paused_until: float = field(default=float("-inf"), init=False, repr=False)

    @property
    def active(self) -> bool:
        return self.reranker.model is not None

    def apply(self, query: str, ranked: Sequence[tuple[Hit, float]]) -> Reranked:
        model = self.reranker.model
        if model is None or not ranked:
            return Reranked(list(ranked))
        started = self.clock()
        if started < self._paused_until:
            return Reranked(list(ranked), report=RerankReport("skipped", model, "paused"))
        head, tail = list(ranked[: self.top_n]), list(ranked[self.top_n :])
        try:
            order = self.reranker.rerank(query, [embed_text(hit.chunk) for hit, _ in head])
        except RerankUnavailable as exc:
            ended = self.clock()
            ms = (ended - started) * 1000
            if exc.reason in PAUSE_ON:
                self._paused_until = ended + self.pause_s
            logger.warning(
                "rerank skipped", extra={"reason": exc.reason, "model": model, "error": str(exc), "rerank_ms": ms}
            )
            return Reranked(list(ranked), report=RerankReport("skipped", model, exc.reason), ms=ms)
        ms = (self.clock() - started) * 1000
        scores = {head[i][0].chunk.doc_id: score for i, score in order}
        return Reranked([head[i] for i, _ in order] + tail, scores, RerankReport("applied", model), ms)


NO_RERANK = RerankStep()
