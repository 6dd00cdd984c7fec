"""Hybrid retrieval's rules that do not depend on the engine: when a hybrid query must be answered dense, and
whether a corpus can be ranked by BM25 at all. The adapters run the query itself (dense + BM25 prefetches
fused by Qdrant); they and the in-memory fake take their fallback reasons from here, so all say the same."""

from __future__ import annotations

from collections.abc import Iterable

from .domain import RetrievalMode

NO_SPARSE = "index version has no BM25 vectors"
NO_TERMS = "query has no BM25 term (only stop words or punctuation)"

# A corpus is left dense when at least this share of its letters are in scripts written without spaces between
# words: BM25's word tokenizer turns each run of such text into one token that no question repeats.
UNSPACED_SHARE = 0.5

# Code point ranges of scripts written without spaces between words (CJK ideographs and their extensions,
# kana, Thai, Lao, Khmer, Myanmar, Tibetan). Hangul is spaced, so it is not here.
_UNSPACED = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x3134F),  # CJK extensions B-G
)


def _unspaced(ch: str) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in _UNSPACED)


def dense_fallback(mode: RetrievalMode, version_has_sparse: bool, query_terms: int) -> str:
    """Why a query asked in `mode` is answered dense: "" when it is not (dense asked, or hybrid can run)."""
    if mode == "dense":
        return ""
    if not version_has_sparse:
        return NO_SPARSE
    if query_terms == 0:
        return NO_TERMS
    return ""


def bm25_unusable(texts: Iterable[str]) -> str:
    """Why BM25 cannot rank this corpus ("" when it can): no letters at all, or mostly scripts without spaces
    between words (e.g. Chinese or Japanese only)."""
    letters = unspaced = 0
    for text in texts:
        for ch in text:
            if ch.isalpha():
                letters += 1
                if ord(ch) >= 0x0E00 and _unspaced(ch):
                    unspaced += 1
    if letters == 0:
        return "the corpus has no letters for BM25 to index"
    if unspaced >= UNSPACED_SHARE * letters:
        return (
            f"{unspaced / letters:.0%} of the corpus's letters are in scripts written without spaces between words "
            "(CJK, Thai…): BM25's word tokenizer cannot split them"
        )
    return ""
