"""Votes → training triplets and held-out judgements. Grouped by query text (the same question asked twice
is one query), split into train/held-out by a hash of the text, so the split is stable night after night."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..domain import Vote, normalise
from .metrics import Judged


def is_heldout(query: str, fraction: float) -> bool:
    digest = hashlib.sha256(normalise(query).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass
class QueryVotes:
    query: str
    up: dict[str, str] = field(default_factory=dict)  # doc_id → chunk_id shown
    down: dict[str, str] = field(default_factory=dict)
    voted_at: dict[str, float] = field(default_factory=dict)  # doc_id → time of its latest vote
    vector: bytes = b""  # the query's packed vector, by `model` (copied from its votes)
    model: str = ""
    mined: list[str] = field(default_factory=list)  # chunk ids: mined hard negatives (mine_negatives)


def group_votes(votes: Sequence[Vote]) -> dict[str, QueryVotes]:
    """Latest vote wins per (query, doc): a 👍 changed to 👎 counts as 👎."""
    groups: dict[str, QueryVotes] = {}
    for v in sorted(votes, key=lambda v: v.created_at):
        g = groups.setdefault(normalise(v.query), QueryVotes(v.query))
        (g.up if v.vote == "up" else g.down)[v.doc_id] = v.chunk_id
        (g.down if v.vote == "up" else g.up).pop(v.doc_id, None)
        g.voted_at[v.doc_id] = v.created_at
        if v.embedding:
            g.vector, g.model = v.embedding, v.pair.model_version
    return groups


def mine_negatives(g: QueryVotes, ranked: Sequence[tuple[str, str]], per_query: int) -> list[str]:
    """Hard negatives the voter implied: the chunks that `ranked` ((chunk_id, doc_id), best first: the live
    model's ranking for the query) puts above one of the query's 👍 chunks, from documents nobody voted up, and
    not already a 👎 chunk. The ones ranked highest first, at most `per_query`. A 👍 chunk outside `ranked`
    makes every chunk of it count as above."""
    shown_up = set(g.up.values())
    down = set(g.down.values())
    order = [c for c, _ in ranked]
    lowest_up = max((order.index(c) if c in order else len(order) for c in shown_up), default=-1)
    out: list[str] = []
    for chunk_id, doc_id in ranked[: max(0, lowest_up)]:
        if len(out) >= per_query:
            break
        if doc_id not in g.up and chunk_id not in down:
            out.append(chunk_id)
    return out


@dataclass(frozen=True)
class Triplet:
    query: str
    positive: str
    negative: str
    hard: bool  # the negative is a 👎 or a mined chunk of this query (else a random corpus chunk)
    at: float = 0.0  # the newer of its two votes (a random negative has none): the train budget keeps the newest
    mined: bool = False  # the negative was mined (ranked above a 👍 chunk, never voted up), not voted 👎


@dataclass(frozen=True)
class Split:
    train: list[QueryVotes]
    heldout: list[QueryVotes]


def split(groups: dict[str, QueryVotes], fraction: float) -> Split:
    train: list[QueryVotes] = []
    heldout: list[QueryVotes] = []
    for key in sorted(groups):
        (heldout if is_heldout(key, fraction) else train).append(groups[key])
    return Split(train, heldout)


def triplets(
    train: Sequence[QueryVotes],
    chunk_text: Callable[[str], str | None],
    random_chunks: Sequence[str],
    seed: int = 0,
) -> list[Triplet]:
    """One triplet per 👍 chunk, its negative a 👎 chunk of the same query when there is one (cycled), else a
    random corpus chunk. 👎-only queries contribute nothing: without a positive there is no anchor pair.
    The query's mined negatives (QueryVotes.mined) follow its 👎 chunks, as hard negatives of their own.
    Text is what the index embeds for the chunk that was shown (looked up by chunk id in the live corpus)."""
    rng = random.Random(seed)
    out: list[Triplet] = []
    for g in train:
        positives = [(t, g.voted_at.get(d, 0.0)) for d, t in ((d, chunk_text(c)) for d, c in g.up.items()) if t]
        negatives: list[tuple[str, float, bool]] = [
            (t, g.voted_at.get(d, 0.0), False) for d, t in ((d, chunk_text(c)) for d, c in g.down.items()) if t
        ]
        newest = max(g.voted_at.values(), default=0.0)
        voted = {t for t, _, _ in negatives}
        negatives += [(t, newest, True) for t in dict.fromkeys(map(chunk_text, g.mined)) if t and t not in voted]
        for i, (pos, up_at) in enumerate(positives):
            if negatives:
                neg, down_at, mined = negatives[i % len(negatives)]
                out.append(Triplet(g.query, pos, neg, True, max(up_at, down_at), mined))
            elif random_chunks:
                neg = rng.choice(random_chunks)
                if neg != pos:
                    out.append(Triplet(g.query, pos, neg, False, up_at))
        # More 👎 than 👍: the extra hard negatives still teach, beside a positive of the same query.
        for j in range(len(positives), len(negatives)):
            if positives:
                (pos, up_at), (neg, down_at, mined) = positives[j % len(positives)], negatives[j]
                out.append(Triplet(g.query, pos, neg, True, max(up_at, down_at), mined))
    return out


def judged(groups: Sequence[QueryVotes]) -> list[Judged]:
    return [Judged(g.query, frozenset(g.up), frozenset(g.up) | frozenset(g.down)) for g in groups if g.up]
