"""`make bench-hybrid`: retrieval quality by mode on the development benchmark, no training; then vote steering.

The man-page corpus of sections 2/3/5/7 (scripts/man_corpus.py, as `make bench-loop` builds it; never
sections 1 or 8), or with --corpus demo the demo corpus and its golden set, ingested with the base encoder into
an Edge index that stores BM25 vectors too. Its queries are split as bench-loop splits them: the first half
(train, where the smoke step chooses the mode) and the other half (held-out, where the choice is checked).
Prints P@5, hit@5 and nDCG@10 of each mode on both halves, and the mode the smoke step's rule
(tune/gate.choose_mode) would ship.

Vote steering (steering.py): simulated users ask the train half, see the top 5 and vote 👍 on the relevant
documents and 👎 on the others (as bench-loop's do), up to --votes votes. The smoke step's fit
(tune/steering_fit.evaluate_steering) then runs on those votes in the chosen mode, and the bench prints
held-out and repeated P@5, hit@5, nDCG@10 without and with steering (through the engine), the params the fit
chose, and the steered query's added cost: the same queries timed plain and steered, in turns."""

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

from rag_autotune.domain import RETRIEVAL_MODES, RetrievalMode  # noqa: E402
from rag_autotune.memory import MemoryParams, MemoryVote, build_memory  # noqa: E402
from rag_autotune.ports import Encoder, VectorIndex  # noqa: E402
from rag_autotune.steering import SteerParams  # noqa: E402
from rag_autotune.tune.gate import choose_mode  # noqa: E402
from rag_autotune.tune.latency import interleaved  # noqa: E402
from rag_autotune.tune.memory_eval import fold_of  # noqa: E402
from rag_autotune.tune.metrics import Judged, evaluate  # noqa: E402
from rag_autotune.tune.steering_fit import doc_vectors, evaluate_steering  # noqa: E402
from rag_autotune.tune.steps import cached_encoder, ranker  # noqa: E402
from rag_autotune.versions import read_manifest  # noqa: E402

T0 = 1_780_000_000.0  # the votes' clock: one instant, so no vote has decayed when they are judged


def simulated_votes(
    encoder: Encoder, index: VectorIndex, version: str, mode: RetrievalMode, asked: list[Judged], budget: int
) -> tuple[list[MemoryVote], int]:
    """Each user (one per train query) sees the top 5 documents and votes 👍 relevant, 👎 the others."""
    votes: list[MemoryVote] = []
    users = 0
    for i, q in enumerate(asked):
        if len(votes) >= budget:
            break
        users += 1
        hits = index.query(version, encoder.encode([q.query])[0], q.query, 20, mode).hits
        shown: dict[str, str] = {}
        for h in hits:
            shown.setdefault(h.chunk.doc_id, h.chunk.chunk_id)
        for doc, chunk in list(shown.items())[:5]:
            votes.append(MemoryVote(q.query, doc, f"sim-{i}", doc in q.relevant, T0 + len(votes), chunk))
    return votes, users


def bench_steering(
    encoder: Encoder, index: VectorIndex, version: str, mode: RetrievalMode, sets: dict[str, list[Judged]], budget: int
) -> None:
    votes, users = simulated_votes(encoder, index, version, mode, sets["train"], budget)
    repeated = sets["train"][:users]  # only the queries users asked
    now = votes[-1].created_at
    texts = list(dict.fromkeys(v.query for v in votes))
    qvecs = dict(zip(texts, encoder.encode(texts), strict=True))
    params = MemoryParams()
    docs = doc_vectors(index, version, votes)
    t = time.perf_counter()
    section, shipped = evaluate_steering(
        votes,
        [[v for v in votes if fold_of(v.query) == f] for f in (0, 1)],
        fold_of,
        {"repeated": repeated, "heldout": sets["held-out"]},
        encoder=encoder,
        query_vectors=qvecs,
        index=index,
        version=version,
        mode=mode,
        params=params,
        docs=docs,
        now=now,
    )
    fit_s = time.perf_counter() - t
    print(f"\n## Vote steering, {mode}: {len(votes)} votes by {users} users on the train half (fit {fit_s:.0f} s)\n")
    unsteered = section.get("unseen_without", 0.0)
    print(f"train-split fit (two folds, each steered by the other's votes): nDCG@10 unsteered {unsteered:.4f}")
    best = max(section.get("grid", []), key=lambda g: g["unseen"], default=None)
    if best:
        print(f"best grid point: radius {best['radius']}, b {best['b']}, c {best['c']}: {best['unseen']:.4f}")
    print(f"shipped: {shipped} ({'; '.join(section['reasons'])})")
    rows = section.get("rows")
    if rows:
        print("\n| set | n | steering | P@5 | hit@5 | nDCG@10 |\n|---|---|---|---|---|---|")
        for name in ("heldout", "repeated"):
            for which in ("without", "with"):
                m = rows[name][which]
                print(f"| {name} | {m['n']} | {which} | {m['p@5']:.3f} | {m['hit@5']:.3f} | {m['ndcg@10']:.3f} |")
    fitted = SteerParams(shipped.radius, shipped.a, shipped.b, shipped.c, enabled=True) if best else None
    if fitted is None:
        return
    mem = build_memory(encoder.version, votes, qvecs, encoder.dim, params, now)
    mem.doc_vectors.update({d: v for d, v in docs.items() if d in mem.doc_chunks})
    held = [q.query for q in sets["held-out"]]
    vec = {q: encoder.encode([q])[0] for q in held}
    steers = {q: mem.steer(vec[q], now, fitted) for q in held}
    steered_q = [q for q in held if steers[q] is not None]
    print(f"\nheld-out questions with a voted question within radius {fitted.radius}: {len(steered_q)}/{len(held)}")
    if not steered_q:
        return
    lat = interleaved(
        lambda q: index.query(version, vec[q], q, 20, mode, steers[q]),
        lambda q: index.query(version, vec[q], q, 20, mode),
        steered_q,
        n=600,
    )
    p50 = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print(
        f"index query (top 20, {mode}) on those, in turns: plain p50 {p50(lat.live):.2f} / p99 {lat.live_p99:.2f} ms, "
        f"steered p50 {p50(lat.candidate):.2f} / p99 {lat.candidate_p99:.2f} ms"
    )
    t = time.perf_counter()
    for q in steered_q * 3:
        mem.steer(vec[q], now, fitted)
    per = (time.perf_counter() - t) * 1000 / (3 * len(steered_q))
    print(f"building the feedback from {len(mem)} remembered votes: {per:.3f} ms per question (mean)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000, help="at most this many documents (all usable pages: ~1.7k)")
    ap.add_argument("--max-chars", type=int, default=3000, help="page text kept per document")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--corpus", choices=["man", "demo"], default="man", help="demo: demo/corpus.jsonl + golden")
    ap.add_argument("--votes", type=int, default=500, help="simulated votes on the train half for steering")
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.corpus == "demo":
        docs = [json.loads(line) for line in (REPO / "demo" / "corpus.jsonl").read_text().splitlines() if line]
        queries = [json.loads(line) for line in (REPO / "demo" / "golden.jsonl").read_text().splitlines() if line]
    else:
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
        choice = choose_mode(scores["train"], scores["held-out"])
        bench_steering(encoder, rt.index, pair.index_version, choice.mode, sets, args.votes)
    finally:
        bench.stop()

    what = "demo documents" if args.corpus == "demo" else "man pages (2,3,5,7)"
    print(f"\n## Retrieval quality by mode, base encoder {pair.model_version}, {len(docs)} {what}\n")
    print("| mode | set | n | P@5 | hit@5 | nDCG@10 |\n|---|---|---|---|---|---|")
    for name in sets:
        for mode in RETRIEVAL_MODES:
            m = scores[name][mode]
            print(f"| {mode} | {name} | {m['n']} | {m['p@5']:.3f} | {m['hit@5']:.3f} | {m['ndcg@10']:.3f} |")
    print(f"\nsmoke's rule would ship: {choice.mode} ({choice.reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
