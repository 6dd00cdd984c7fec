"""Answer generation. The default is offline and extractive: the sentences of the top passages that share
the most words with the question, each cited as [n]. Bedrock (adapters/bedrock.py) has the same shape."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

_WORD = re.compile(r"[a-z0-9_]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "you",
        "your",
    ]
)


@dataclass(frozen=True)
class Passage:
    n: int  # the citation number shown as [n]
    title: str
    text: str


class Generator(Protocol):
    def answer(self, query: str, passages: Sequence[Passage]) -> str: ...

    def stream(self, query: str, passages: Sequence[Passage]) -> Iterator[str]: ...


def terms(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def best_sentence(query: str, text: str, max_chars: int = 280) -> str:
    """The sentence of `text` that shares the most terms with `query` (the first on ties), cut to max_chars."""
    q = terms(query)
    sentences = [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]
    if not sentences:
        return ""
    best = max(sentences, key=lambda s: (len(q & terms(s)), -sentences.index(s)))
    return best if len(best) <= max_chars else best[: max_chars - 1].rsplit(" ", 1)[0] + "…"


class ExtractiveGenerator:
    """No model, no network: a short answer stitched from the best sentence of up to three passages."""

    def __init__(self, max_passages: int = 3) -> None:
        self._max = max_passages

    def answer(self, query: str, passages: Sequence[Passage]) -> str:
        return "".join(self.stream(query, passages))

    def stream(self, query: str, passages: Sequence[Passage]) -> Iterator[str]:
        if not passages:
            yield "I found nothing in the documents about that."
            return
        seen: set[str] = set()
        first = True
        for p in passages[: self._max]:
            sentence = best_sentence(query, p.text)
            if not sentence or sentence in seen:
                continue
            seen.add(sentence)
            yield ("" if first else " ") + f"{sentence} [{p.n}]"
            first = False
        if first:
            yield f"See {passages[0].title} [{passages[0].n}]."
