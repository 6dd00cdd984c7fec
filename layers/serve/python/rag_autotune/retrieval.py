"""Hybrid retrieval's rules that do not depend on the engine: when a hybrid query must be answered dense, and
whether a corpus can be ranked by BM25 at all. The adapters run the query itself (dense + BM25 prefetches
fused by Qdrant); they and the in-memory fake take their fallback reasons from here, so all say the same."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .domain import RetrievalMode

NO_SPARSE = "index version has no BM25 vectors"
NO_TERMS = "query has no BM25 term (only stop words or punctuation)"

# A corpus is left dense when at least this share of its letters are in scripts written without spaces between
# words: BM25's word tokenizer turns each run of such text into one token that no question repeats.
UNSPACED_SHARE = 0.5

# Scripts written without spaces between words: Thai, Lao, Tibetan, Myanmar, Khmer, kana, CJK ideographs (with
# their extensions and compatibility forms), half-width Katakana. Hangul is spaced, so it is not here.
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]"
)
_LETTER = re.compile(r"[^\W\d_]")


def dense_fallback(mode: RetrievalMode, version_has_sparse: bool, query_terms: int) -> str:
    """Why a query asked in `mode` is answered dense: "" when it is not (dense asked, or hybrid can run)."""
    if mode == "dense":
        return ""
    if not version_has_sparse:
        return NO_SPARSE
    if query_terms == 0:
        return NO_TERMS
    return ""


class Bm25Check:
    """Whether BM25 can rank a corpus, fed one text at a time (so a stream that is read for something else,
    such as the fan-out's shards, is read once)."""

    def __init__(self) -> None:
        self.letters = self.unspaced = 0

    def add(self, text: str) -> None:
        # regexes, not a loop over characters: an ingest may hold millions of them
        self.letters += len(_LETTER.findall(text))
        self.unspaced += len(_UNSPACED.findall(text))

    def reason(self) -> str:
        """Why BM25 cannot rank the texts added so far ("" when it can): no letters at all, or mostly scripts
        without spaces between words (e.g. Chinese or Japanese only)."""
        if self.letters == 0:
            return "the corpus has no letters for BM25 to index"
        if self.unspaced >= UNSPACED_SHARE * self.letters:
            return (
                f"{self.unspaced / self.letters:.0%} of the corpus's letters are in scripts written without spaces "
                "between words (CJK, Thai…): BM25's word tokenizer cannot split them"
            )
        return ""


def bm25_unusable(texts: Iterable[str]) -> str:
    """Why BM25 cannot rank this corpus ("" when it can): see Bm25Check."""
    check = Bm25Check()
    for text in texts:
        check.add(text)
    return check.reason()
