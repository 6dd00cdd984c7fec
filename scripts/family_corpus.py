"""A second development corpus, built from the installed man pages of sections 2 and 3: documents in
near-duplicate families (pthread_attr_*, str*/wcs*, the queue macros, xdr_*, …) and questions with several
relevant documents each, so that P@5 means something and a 👎 on a sibling page is a near-duplicate text.

Each page is a document (scripts/man_corpus.py renders it). A page's NAME description is a question; the
relevant documents are every page whose description says nearly the same thing: the same first content word
(the verb: "set" never matches "get") and a content-word Jaccard ≥ SIMILAR ("convert a string to a long
integer" and "convert a string to an integer"). Only questions with at least two
relevant documents are kept, and the documents are those pages plus their family siblings (the same name up to
its first "_", else its first three letters), which stay in as near-duplicate distractors.

    python scripts/family_corpus.py --out-docs docs.jsonl --out-queries queries.jsonl
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import man_corpus  # noqa: E402

STOP = frozenset({"a", "an", "the", "of", "and", "or", "to", "in", "for", "from", "with", "on", "by", "is", "as"})
SIMILAR = 0.67
MIN_RELEVANT = 2


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9_]+", text.lower()) if w not in STOP]


def alike(a: list[str], b: list[str], similar: float = SIMILAR) -> bool:
    sa, sb = set(a), set(b)
    return bool(a and b) and a[0] == b[0] and len(sa & sb) / len(sa | sb) >= similar


def family(doc_id: str) -> str:
    """'pthread_attr_setstack.3' → 'pthread', 'TAILQ_INSERT.3' → 'tailq', 'strncpy.3' → 'str' (no "_": the
    first three letters, as the C library names its families: str*, wcs*, mem*)."""
    name = doc_id.rsplit(".", 1)[0].lower()
    return name.split("_", 1)[0] if "_" in name else name[:3]


def families(
    docs: Sequence[man_corpus.Doc],
    queries: Sequence[man_corpus.Query],
    similar: float = SIMILAR,
    min_relevant: int = MIN_RELEVANT,
) -> tuple[list[man_corpus.Doc], list[man_corpus.Query]]:
    """Questions re-judged by description similarity, those with `min_relevant` or more relevant pages kept,
    with the documents they need and their families' other pages."""
    description = {d: q["query"] for q in queries for d in q["relevant"]}
    words = {d: content_words(text) for d, text in description.items()}
    out: dict[str, man_corpus.Query] = {}
    for q in queries:
        mine = content_words(q["query"])
        if not mine:
            continue
        relevant = sorted(d for d, w in words.items() if alike(mine, w, similar))
        if len(relevant) >= min_relevant:
            out[q["query"].lower()] = {"query": q["query"], "relevant": relevant}
    needed = {d for q in out.values() for d in q["relevant"]}
    kin = {family(d) for d in needed}
    kept = sorted((d for d in docs if d["id"] in needed or family(d["id"]) in kin), key=lambda d: d["id"])
    return kept, sorted(out.values(), key=lambda q: q["query"].lower())


def build(
    limit: int | None = None, seed: int = 0, max_chars: int = 3000, min_relevant: int = MIN_RELEVANT
) -> tuple[list[man_corpus.Doc], list[man_corpus.Query]]:
    docs, queries = man_corpus.build(["2", "3"], None, seed, max_chars=max_chars)
    docs, queries = families(docs, queries, min_relevant=min_relevant)
    if limit is not None and len(docs) > limit:  # whole questions, in a seeded order, until the cap
        keep: set[str] = set()
        picked: list[man_corpus.Query] = []
        for q in random.Random(seed).sample(queries, len(queries)):
            if len(keep | set(q["relevant"])) > limit:
                break
            keep |= set(q["relevant"])
            picked.append(q)
        kin = {family(d) for d in keep}
        extra = [d["id"] for d in docs if d["id"] not in keep and family(d["id"]) in kin][: max(0, limit - len(keep))]
        keep |= set(extra)
        docs, queries = [d for d in docs if d["id"] in keep], sorted(picked, key=lambda q: q["query"].lower())
    return docs, queries


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="at most this many documents (whole questions kept)")
    ap.add_argument("--max-chars", type=int, default=3000)
    ap.add_argument("--min-relevant", type=int, default=MIN_RELEVANT, help="fewest relevant pages a question")
    ap.add_argument("--out-docs", type=Path, required=True)
    ap.add_argument("--out-queries", type=Path, required=True)
    a = ap.parse_args(argv)
    docs, queries = build(a.limit, max_chars=a.max_chars, min_relevant=a.min_relevant)
    man_corpus.write_jsonl(a.out_docs, docs)
    man_corpus.write_jsonl(a.out_queries, queries)
    per = sum(len(q["relevant"]) for q in queries) / max(1, len(queries))
    print(f"{len(docs)} docs, {len(queries)} questions, {per:.1f} relevant per question", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
