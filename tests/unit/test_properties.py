"""Issue 5, property tests (hypothesis): the chunker, and the votes → training pairs builder (tune/dataset.py).
Bounded example counts and no deadline flakiness on a busy 2-core machine: the whole file runs in seconds."""

from __future__ import annotations

import string
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_autotune.chunking import chunk_document
from rag_autotune.domain import Document, VersionPair, Vote
from rag_autotune.tune.dataset import group_votes, is_heldout, normalise, split, triplets

FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Text with words, sentence ends, paragraph breaks, odd whitespace and the odd very long word (hard cuts).
_word = st.text(alphabet=string.ascii_letters + string.digits + "é<>&'\"-", min_size=1, max_size=12)
_long_word = st.text(alphabet="xyz", min_size=30, max_size=400)
_sep = st.sampled_from([" ", "  ", ". ", "! ", "? ", "\n", "\n\n", " \n \n ", "\t", ".\n\n"])
_text = st.lists(st.tuples(st.one_of(_word, _word, _word, _long_word), _sep), max_size=120).map(
    lambda parts: "".join(w + s for w, s in parts)
)


def _ink(s: str) -> str:
    """The characters that carry content: the chunker normalises whitespace and nothing else."""
    return "".join(s.split())


def _is_subsequence(needle: str, haystack: str) -> bool:
    it = iter(haystack)
    return all(ch in it for ch in needle)


@FAST
@given(text=_text, size=st.integers(20, 400), overlap_frac=st.floats(0.0, 1.0), doc_id=st.text(min_size=1, max_size=8))
def test_chunker_covers_every_character_with_bounded_sizes_and_overlap(
    text: str, size: int, overlap_frac: float, doc_id: str
) -> None:
    overlap = int(size * overlap_frac)
    doc = Document(doc_id, "Title", text)
    chunks = chunk_document(doc, size=size, overlap=overlap)
    assert chunks, "every document gives at least one chunk"
    ink = _ink(text)
    if not ink:
        assert [c.text for c in chunks] == ["Title"]  # an empty body is findable by its title
        return
    joined = "".join(_ink(c.text) for c in chunks)
    # every character of the text is in some chunk, in order ...
    assert _is_subsequence(ink, joined)
    # ... and the only repetition is the overlap: at most `overlap` characters carried into each next chunk
    assert len(joined) - len(ink) <= overlap * (len(chunks) - 1)
    for c in chunks:
        assert 0 < len(c.text) <= size
        assert c.doc_id == doc_id and c.title == "Title"
    # stable and unique ids, "<doc_id>#<n>" in order
    assert [c.chunk_id for c in chunks] == [f"{doc_id}#{i}" for i in range(len(chunks))]
    assert chunk_document(doc, size=size, overlap=overlap) == chunks


def _carried(prev: str, cur: str) -> int:
    """Length of the longest suffix of prev that is a prefix of cur (an upper bound on what was carried)."""
    for n in range(min(len(prev), len(cur)), 0, -1):
        if prev.endswith(cur[:n]):
            return n
    return 0


@FAST
@given(
    ends=st.lists(st.sampled_from(["", "", ".", "!"]), min_size=60, max_size=300),
    per_para=st.integers(1, 4),
    overlap=st.integers(12, 60),
)
def test_chunker_overlap_carries_the_tail_of_the_previous_chunk(ends: list[str], per_para: int, overlap: int) -> None:
    """Short paragraphs of distinct words and room to spare: every chunk after the first starts with whole words
    from the end of the one before, at most `overlap` characters of them, then goes on with new text."""
    words = [f"w{i}{end}" for i, end in enumerate(ends)]  # distinct, so what was carried is unambiguous
    paras = [" ".join(words[i : i + per_para]) for i in range(0, len(words), per_para)]
    chunks = chunk_document(Document("d", "T", "\n\n".join(paras)), size=150, overlap=overlap)
    assert len(chunks) > 1
    for prev, cur in zip(chunks, chunks[1:], strict=False):
        carried = _carried(prev.text, cur.text)
        tail = cur.text[:carried]
        assert 0 < carried <= overlap and prev.text.endswith(tail)
        assert tail.split() == prev.text.split()[-len(tail.split()) :]  # whole words, never half of one
        assert cur.text[carried:].strip()  # and new text after it


# ---- votes → training pairs ------------------------------------------------------------------------------

_queries = st.sampled_from(["How do I make a pipe", "how do i  make a PIPE", "free memory", "open a file", "fork"])
_docs = st.sampled_from(["pipe.2", "open.2", "malloc.3", "fork.2", "exec.3", "ghost.9"])


@st.composite
def _votes(draw: st.DrawFn) -> list[Vote]:
    n = draw(st.integers(0, 40))
    times = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    out = []
    for t in times:
        doc = draw(_docs)
        out.append(
            Vote(
                query_id=f"q{t}",
                doc_id=doc,
                chunk_id=f"{doc}#{draw(st.integers(0, 2))}",
                vote=draw(st.sampled_from(["up", "down"])),
                rank=draw(st.integers(1, 5)),
                query=draw(_queries),
                pair=VersionPair("v0", "v0-c1"),
                created_at=float(t),
            )
        )
    return draw(st.permutations(out))


@FAST
@given(votes=_votes())
def test_group_votes_latest_vote_wins_per_query_and_document(votes: list[Vote]) -> None:
    groups = group_votes(votes)
    assert set(groups) == {normalise(v.query) for v in votes}
    latest: dict[tuple[str, str], Vote] = {}
    for v in sorted(votes, key=lambda v: v.created_at):
        latest[(normalise(v.query), v.doc_id)] = v
    for key, g in groups.items():
        assert not set(g.up) & set(g.down), "a document is either 👍 or 👎 for a query, never both"
        assert normalise(g.query) == key
        for doc, chunk in {**g.up, **g.down}.items():
            v = latest[(key, doc)]
            assert (doc in g.up) == (v.vote == "up") and chunk == v.chunk_id
    assert sum(len(g.up) + len(g.down) for g in groups.values()) == len(latest)
    assert group_votes(list(reversed(votes))).keys() == groups.keys()  # input order does not matter


@FAST
@given(votes=_votes(), fraction=st.floats(0.0, 0.99), more=st.floats(0.0, 0.99))
def test_split_is_a_stable_partition_by_query_text(votes: list[Vote], fraction: float, more: float) -> None:
    groups = group_votes(votes)
    s = split(groups, fraction)
    train, held = [g.query for g in s.train], [g.query for g in s.heldout]
    assert sorted(map(normalise, train + held)) == sorted(groups)  # every query once, in exactly one side
    assert all(is_heldout(q, fraction) for q in held) and not any(is_heldout(q, fraction) for q in train)
    assert split(groups, fraction) == s  # the same votes split the same way every night
    bigger = split(groups, max(fraction, more))
    assert {normalise(q.query) for q in s.heldout} <= {normalise(q.query) for q in bigger.heldout}
    assert split(groups, 0.0).heldout == []


@FAST
@given(votes=_votes(), seed=st.integers(0, 3), missing=st.sets(_docs, max_size=2), corpus_size=st.integers(0, 4))
def test_triplets_are_anchored_on_shown_chunks(
    votes: list[Vote], seed: int, missing: set[str], corpus_size: int
) -> None:
    groups = list(group_votes(votes).values())

    def chunk_text(chunk_id: str) -> str | None:  # chunks of `missing` docs are gone from the live corpus
        return None if chunk_id.split("#")[0] in missing else f"text of {chunk_id}"

    random_chunks = [f"random chunk {i}" for i in range(corpus_size)]
    out = triplets(groups, chunk_text, random_chunks, seed=seed)
    assert triplets(groups, chunk_text, random_chunks, seed=seed) == out  # deterministic for a seed
    by_query = {g.query: g for g in groups}
    for t in out:
        g = by_query[t.query]
        ups = {chunk_text(c) for c in g.up.values()}
        downs = {chunk_text(c) for c in g.down.values()}
        assert t.positive in ups and t.positive is not None  # the anchor pair is a 👍 chunk that was shown
        assert t.negative != t.positive
        if t.hard:
            assert t.negative in downs
        else:
            assert t.negative in random_chunks and not [d for d in downs if d]
    counts = Counter(t.query for t in out)
    for g in groups:
        positives = [t for t in (chunk_text(c) for c in g.up.values()) if t]
        negatives = [t for t in (chunk_text(c) for c in g.down.values()) if t]
        if not positives:
            assert counts[g.query] == 0  # 👎-only queries give no triplet: no anchor
        elif negatives:
            # every shown 👍 and every shown 👎 is used, each pairing once
            assert counts[g.query] == max(len(positives), len(negatives))
            mine = [t for t in out if t.query == g.query]
            assert {t.positive for t in mine} == set(positives) and {t.negative for t in mine} == set(negatives)
        else:
            assert counts[g.query] <= len(positives)
            assert corpus_size or counts[g.query] == 0
