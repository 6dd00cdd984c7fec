"""Answer generation. The default is offline and extractive: a few prose sentences of the top passages that
share the most words with the question, each cited as [n]. Bedrock (adapters/bedrock.py) has the same shape."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from .prose import Sentence, prose_sentences

_WORD = re.compile(r"[a-z0-9_]+")
STOP_WORDS = frozenset(  # also the test fakes' BM25 stop list
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
    """The words of text that carry meaning, with a plural or third-person "s" taken off ("pipes" and
    "creates" match "pipe" and "create")."""
    words = {w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and len(w) > 1}
    return {w[:-1] if len(w) > 3 and w[-1] == "s" and w[-2] != "s" else w for w in words}


def _shared(query_terms: set[str], text: str) -> int:
    """How many of the query's terms (as terms() gives them) are words of text: len(query_terms & terms(text)),
    without building the text's terms (this runs on every sentence of every passage)."""
    words = set(_WORD.findall(text.lower()))
    return sum(1 for t in query_terms if t in words or t + "s" in words)


# An answer sentence longer than this is taken only when it shares more terms than every shorter one.
LONG_SENTENCE = 250


# Out of its passage, a sentence that opens on a pronoun does not say what it is about.
_DANGLING = ("It ", "Its ", "They ", "Their ", "This is ")


def _ranked(query_terms: set[str], sentences: Sequence[Sentence]) -> list[tuple[int, Sentence]]:
    """(shared terms, sentence), best first: most shared terms, then not long, then not opening on a pronoun,
    then from DESCRIPTION, then earliest."""
    scored = [(_shared(query_terms, s.text), s) for s in sentences]
    return sorted(
        scored,
        key=lambda ts: (
            -ts[0],
            len(ts[1].text) > LONG_SENTENCE,
            ts[1].text.startswith(_DANGLING),
            ts[1].section != "DESCRIPTION",
            ts[1].position,
        ),
    )


def _cut(text: str, max_chars: int) -> str:
    """text, or its start cut at a word boundary with "…", in max_chars."""
    if len(text) <= max_chars:
        return text
    return text[: max_chars - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def best_sentence(query: str, text: str, max_chars: int = 280) -> str:
    """The prose sentence of `text` that shares the most terms with `query` (see _ranked), cut to max_chars;
    "" when the text has no prose sentence."""
    ranked = _ranked(terms(query), prose_sentences(text))
    return _cut(ranked[0][1].text, max_chars) if ranked else ""


@dataclass(frozen=True)
class _Pick:
    rank: int  # the passage's index among the passages used
    sentence: Sentence
    text: str  # the sentence, cut only when nothing shorter could open the answer
    n: int  # its passage's citation number


def _join(picks: Sequence[_Pick]) -> list[str]:
    """The answer's pieces: in reading order (passage by passage, each passage's sentences as they appear in
    it), each cited."""
    ordered = sorted(picks, key=lambda p: (p.rank, p.sentence.position))
    return [("" if i == 0 else " ") + f"{p.text} [{p.n}]" for i, p in enumerate(ordered)]


class ExtractiveGenerator:
    """No model, no network: a short answer of at most max_sentences prose sentences and max_chars in all,
    citations included, from the top max_passages passages. First the best sentence (see _ranked) of each
    passage in rank order, then, while there is room, the next best of any of them. The top passage's best
    opens the answer even if it shares no term with the question; any other sentence must share half of the
    question's terms. A sentence is cut (at a word, with "…") only when the top passage has nothing shorter
    to open the answer with. Streamed, each cited sentence is one piece."""

    def __init__(self, max_passages: int = 3, max_sentences: int = 3, max_chars: int = 400) -> None:
        self._max = max_passages
        self._max_sentences = max_sentences
        self._max_chars = max_chars

    def answer(self, query: str, passages: Sequence[Passage]) -> str:
        return "".join(self.stream(query, passages))

    def stream(self, query: str, passages: Sequence[Passage]) -> Iterator[str]:
        if not passages:
            yield "I found nothing in the documents about that."
            return
        picks = self._pick(query, passages[: self._max])
        if not picks:
            yield f"See {passages[0].title}. [{passages[0].n}]"
            return
        yield from _join(picks)

    def _pick(self, query: str, passages: Sequence[Passage]) -> list[_Pick]:
        q = terms(query)
        seen: set[str] = set()  # overlapping chunks repeat sentences
        ranked: list[list[tuple[int, Sentence]]] = []
        for p in passages:
            fresh = [s for s in prose_sentences(p.text) if s.text not in seen]
            seen.update(s.text for s in fresh)
            ranked.append(_ranked(q, fresh))
        picks: list[_Pick] = []

        def room(rank: int) -> int:
            """Characters left for one more sentence of passage `rank` (its separator and citation counted)."""
            used = sum(len(piece) for piece in _join(picks))
            return self._max_chars - used - (1 if picks else 0) - len(f" [{passages[rank].n}]")

        # Beyond the top passage's opening sentence, a sentence that shares one word of a long question is
        # more often off topic than not: it must share half of the question's terms.
        needed = max(1, (len(q) + 1) // 2)
        for rank, candidates in enumerate(ranked):
            if len(picks) >= self._max_sentences:
                break
            eligible = [s for shared, s in candidates if shared >= needed or rank == 0]
            left = room(rank)
            fitting = next((s for s in eligible if len(s.text) <= left), None)
            if fitting is not None:
                picks.append(_Pick(rank, fitting, fitting.text, passages[rank].n))
            elif rank == 0 and eligible:
                picks.append(_Pick(0, eligible[0], _cut(eligible[0].text, left), passages[0].n))
        taken = {(p.rank, p.sentence.position) for p in picks}
        rest = sorted(
            (
                (shared, rank, s)
                for rank, candidates in enumerate(ranked)
                for shared, s in candidates
                if shared >= needed and (rank, s.position) not in taken
            ),
            key=lambda t: (-t[0], t[1]),  # stable: within a passage, _ranked's order
        )
        for _, rank, s in rest:
            if len(picks) >= self._max_sentences:
                break
            if len(s.text) <= room(rank):
                picks.append(_Pick(rank, s, s.text, passages[rank].n))
        return picks
