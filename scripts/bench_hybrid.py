"""`make bench-hybrid`: retrieval quality by mode on the development benchmark, no training, no votes.

The man-page corpus of sections 2/3/5/7 (scripts/man_corpus.py, as `make bench-loop` builds it; never
sections 1 or 8), ingested with the base encoder into an Edge index that stores BM25 vectors too. Its queries
are split as bench-loop splits them: the first half (train, where the smoke step chooses the mode) and the
other half (held-out, where the choice is checked). Prints P@5, hit@5 and nDCG@10 of each mode on both halves,
and the mode the smoke step's rule (tune/gate.choose_mode) would ship."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "layers" / "serve" / "python"), str(REPO), str(REPO / "scripts")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bench_stack  # noqa: E402
import man_corpus  # noqa: E402

from rag_autotune.domain import RETRIEVAL_MODES  # noqa: E402
from rag_autotune.tune.gate import choose_mode  # noqa: E402
from rag_autotune.tune.metrics import Judged, evaluate  # noqa: E402
from rag_autotune.tune.steps import cached_encoder, ranker  # noqa: E402
from rag_autotune.versions import read_manifest  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000, help="at most this many documents (all usable pages: ~1.7k)")
    ap.add_argument("--max-chars", type=int, default=3000, help="page text kept per document")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    docs, queries = man_corpus.build(["2", "3", "5", "7"], args.docs, args.seed, max_chars=args.max_chars)
    print(f"corpus: {len(docs)} documents, {len(queries)} queries ({time.perf_counter() - t0:.0f} s)", flush=True)
    work = Path(f"/tmp/rag-bench-hybrid-{uuid.uuid4().hex[:6]}")
    work.mkdir(parents=True)
    corpus = work / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))

    bench = bench_stack.start("hybrid", work / "cache")
    try:
        rt = bench.rt
        bench_stack.bootstrap_and_ingest(bench, corpus)
        pair = read_manifest(rt.store)[0].live  # type: ignore[index]
        print(f"BM25 vectors in {pair.index_version}: {rt.index.has_sparse(pair.index_version)}")

        rng = random.Random(args.seed)  # the same split as bench_loop.py
        shuffled = queries[:]
        rng.shuffle(shuffled)
        halves = {"train": shuffled[: len(shuffled) // 2], "held-out": shuffled[len(shuffled) // 2 :]}
        sets = {name: [Judged(q["query"], frozenset(q["relevant"])) for q in qs] for name, qs in halves.items()}
        encoder = rt.load_encoder(pair.model_version)
        vector_of = cached_encoder(encoder)
        scores = {
            name: {
                mode: evaluate(ranker(encoder, rt.index, pair.index_version, mode=mode, vector_of=vector_of), judged)
                for mode in RETRIEVAL_MODES
            }
            for name, judged in sets.items()
        }
    finally:
        bench.stop()

    print(f"\n## Retrieval quality by mode, base encoder {pair.model_version}, {len(docs)} man pages (2,3,5,7)\n")
    print("| mode | set | n | P@5 | hit@5 | nDCG@10 |\n|---|---|---|---|---|---|")
    for name in sets:
        for mode in RETRIEVAL_MODES:
            m = scores[name][mode]
            print(f"| {mode} | {name} | {m['n']} | {m['p@5']:.3f} | {m['hit@5']:.3f} | {m['ndcg@10']:.3f} |")
    choice = choose_mode(scores["train"], scores["held-out"])
    print(f"\nsmoke's rule would ship: {choice.mode} ({choice.reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
