"""`make bench-train-bisect`: where does the nightly LoRA run lose the gain a document-level probe reaches?

No stack, no AWS: the pieces of the train step on one corpus with simulated votes, scored before and after.

1. A corpus (scripts/family_corpus.py: near-duplicate families, several relevant pages per question; or
   --corpus man: scripts/man_corpus.py) chunked as ingest chunks it, each chunk embedded as the index embeds it
   (chunking.embed_text) by the base model in torch.
2. Simulated users on half of the questions see the base model's top 5 documents (each with its best chunk,
   as /ask cites it) and vote 👍 on the relevant ones and 👎 on the others; the other half is held out.
3. Triplets through tune/dataset.py's `triplets`, one variant per --variants entry:
   - `chunk`: the product (the shown chunk's embed text, 👎 chunks as hard negatives);
   - `doc`: the probe (the document's title + its first 1,200 characters, for the same votes);
   - `chunk+mined`: the product plus mined hard negatives (tune/dataset.py `mine_negatives`, by the base ranking);
   - `chunk-raw`: the product before the training texts carried the title (the chunk's bare text).
4. Each variant trains a fresh LoRA adapter with training/lora.py's TrainConfig (or --overrides; with --grid,
   the grid point the train step's search picks on a fold of the variant's triplets), then the
   chunk index is re-embedded and nDCG@10, hit@5 and P@5 are printed for held-out and repeated questions:
   by the adapter model in torch, and (--int8) by the merged, exported int8 ONNX model the product would ship.

Heavy: run it under `nice`, alone. Prints figures only."""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "layers" / "serve" / "python"), str(REPO / "scripts")]

import family_corpus  # noqa: E402
import man_corpus  # noqa: E402

from rag_autotune.chunking import chunk_document, embed_text  # noqa: E402
from rag_autotune.domain import Chunk, Document  # noqa: E402
from rag_autotune.tune.dataset import QueryVotes, Triplet, mine_negatives, triplets  # noqa: E402
from rag_autotune.tune.metrics import Judged, evaluate  # noqa: E402

Encode = Callable[[list[str]], npt.NDArray[np.float32]]
VARIANTS = ("chunk", "doc", "chunk+mined", "chunk-raw")
PROBE_CHARS = 1200  # the probe's document text: title + this much of the page
SHOWN = 5


class Index:
    """Chunk vectors of one model, ranked at document level as /ask ranks (a document's best chunk)."""

    def __init__(self, chunks: Sequence[Chunk], encode: Encode) -> None:
        self.chunks = list(chunks)
        self.matrix = encode([embed_text(c) for c in self.chunks])
        self.encode = encode
        self._cache: dict[str, list[tuple[str, str]]] = {}

    def ranked_chunks(self, query: str) -> list[tuple[str, str]]:
        if query not in self._cache:
            scores = self.matrix @ self.encode([query])[0]
            self._cache[query] = [(self.chunks[i].chunk_id, self.chunks[i].doc_id) for i in np.argsort(-scores)[:100]]
        return self._cache[query]

    def rank(self, query: str) -> list[str]:
        return list(dict.fromkeys(d for _, d in self.ranked_chunks(query)))[:10]


def simulate(index: Index, voted: Sequence[man_corpus.Query], seed: int) -> list[QueryVotes]:
    """Each user sees the top SHOWN documents with their best chunk and votes on every one."""
    groups: list[QueryVotes] = []
    t = 0.0
    for q in voted:
        g = QueryVotes(q["query"])
        best: dict[str, str] = {}
        for chunk_id, doc_id in index.ranked_chunks(q["query"]):
            best.setdefault(doc_id, chunk_id)
            if len(best) == SHOWN:
                break
        for doc_id, chunk_id in best.items():
            t += 1.0
            (g.up if doc_id in q["relevant"] else g.down)[doc_id] = chunk_id
            g.voted_at[doc_id] = t
        groups.append(g)
    return groups


def variant_rows(
    variant: str, groups: list[QueryVotes], chunks: Sequence[Chunk], docs: dict[str, Any], base: Index, seed: int
) -> list[Triplet]:
    if variant == "doc":
        doc_of = {c.chunk_id: c.doc_id for c in chunks}
        text = {
            c.chunk_id: f"{docs[doc_of[c.chunk_id]]['title']}\n{docs[doc_of[c.chunk_id]]['text'][:PROBE_CHARS]}"
            for c in chunks
        }
    elif variant == "chunk-raw":
        text = {c.chunk_id: c.text for c in chunks}
    else:
        text = {c.chunk_id: embed_text(c) for c in chunks}
    if variant == "chunk+mined":
        for g in groups:
            g.mined = mine_negatives(g, base.ranked_chunks(g.query)[:20], 2)
    rows = triplets(groups, text.get, sorted(set(text.values())), seed=seed)
    for g in groups:
        g.mined = []
    return rows


def scores(rank: Callable[[str], list[str]], sets: dict[str, list[Judged]]) -> dict[str, dict[str, float]]:
    return {name: evaluate(rank, judged) for name, judged in sets.items()}


def line(name: str, before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> str:
    cells = []
    for s in ("held-out", "repeated"):
        b, a = before[s], after[s]
        cells.append(
            f"{b['ndcg@10']:.3f} → {a['ndcg@10']:.3f} | {b['hit@5']:.3f} → {a['hit@5']:.3f} | "
            f"{b['p@5']:.3f} → {a['p@5']:.3f}"
        )
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=("family", "man"), default="family")
    ap.add_argument("--docs", type=int, default=400, help="at most this many documents")
    ap.add_argument("--voted", type=int, default=80, help="questions the simulated users vote on")
    ap.add_argument("--heldout", type=int, default=150, help="questions never voted on")
    ap.add_argument("--variants", default="chunk,doc", help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--int8", default="chunk", help="variants also scored merged + exported int8 ('' for none)")
    ap.add_argument("--overrides", default="{}", help="JSON replacing TrainConfig fields, as RAG_TUNE_TRAIN_OVERRIDES")
    ap.add_argument(
        "--grid", default="[]", help="JSON [[lr, epochs], ...] as RAG_TUNE_TRAIN_GRID: each variant first picks its "
        "config on a fold of its triplets (tune/grid.py), then trains with it"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from rag_autotune.adapters.onnx_encoder import OnnxEncoder
    from rag_autotune.training.export import base_model_path, export_int8, torch_encoder
    from rag_autotune.training.lora import TrainConfig, load_model, merge_adapter, train_lora
    from rag_autotune.tune.train_step import search_grid

    t0 = time.perf_counter()
    if args.corpus == "family":
        docs, queries = family_corpus.build(args.docs, args.seed)
    else:
        docs, queries = man_corpus.build(["2", "3", "5", "7"], args.docs, args.seed, max_chars=3000)
    chunks = [c for d in docs for c in chunk_document(Document(d["id"], d["title"], d["text"]))]
    rng = random.Random(args.seed)
    shuffled = rng.sample(queries, len(queries))
    voted, heldout = shuffled[: args.voted], shuffled[args.voted : args.voted + args.heldout]
    sets = {
        "held-out": [Judged(q["query"], frozenset(q["relevant"])) for q in heldout],
        "repeated": [Judged(q["query"], frozenset(q["relevant"])) for q in voted],
    }
    per = sum(len(q["relevant"]) for q in queries) / max(1, len(queries))
    print(
        f"corpus {args.corpus}: {len(docs)} docs, {len(chunks)} chunks, {len(queries)} questions "
        f"({per:.1f} relevant each); {len(voted)} voted, {len(heldout)} held out ({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    config = TrainConfig.from_overrides(json.loads(args.overrides))
    grid = [(float(lr), int(epochs)) for lr, epochs in json.loads(args.grid)]
    print(f"config: {config.as_dict()}", flush=True)

    t = time.perf_counter()
    base = Index(chunks, torch_encoder(load_model(base_model_path())))
    before = scores(base.rank, sets)
    print(f"base scored ({time.perf_counter() - t:.0f} s)", flush=True)
    groups = simulate(base, voted, args.seed)
    by_id = {d["id"]: d for d in docs}
    print(
        f"votes: {sum(len(g.up) + len(g.down) for g in groups)} "
        f"({sum(len(g.up) for g in groups)} up) on {len(groups)} questions",
        flush=True,
    )
    table: list[str] = []
    int8 = {v for v in args.int8.split(",") if v}
    for variant in [v for v in args.variants.split(",") if v]:
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}: one of {VARIANTS}")
        rows = variant_rows(variant, groups, chunks, by_id, base, args.seed)
        chosen = config
        if grid:
            chosen, report = search_grid(base_model_path(), rows, config, grid, now=time.time, deadline=float("inf"))
            print(f"{variant}: grid {json.dumps(report)}", flush=True)
        model = load_model(base_model_path())
        result = train_lora(model, [(r.query, r.positive, r.negative) for r in rows], chosen)
        loss = f"{result.loss_curve[0][1]:.3f} → {result.loss_curve[-1][1]:.3f}" if result.loss_curve else "-"
        print(
            f"{variant}: {len(rows)} triplets ({sum(r.hard for r in rows)} hard, {sum(r.mined for r in rows)} mined), "
            f"{result.steps} steps in {result.seconds:.0f} s, loss {loss}",
            flush=True,
        )
        t = time.perf_counter()
        tuned = scores(Index(chunks, torch_encoder(model)).rank, sets)
        table.append(line(f"{variant}, torch (adapter)", before, tuned))
        print(f"row: {table[-1]} ({time.perf_counter() - t:.0f} s)", flush=True)
        if variant in int8:
            t = time.perf_counter()
            merge_adapter(model)
            with tempfile.TemporaryDirectory(prefix="bisect-") as tmp:
                model.save(str(Path(tmp) / "torch"))
                onnx_dir = export_int8(Path(tmp) / "torch", Path(tmp) / "onnx", max_seq_len=config.max_seq_len)
                encoder = OnnxEncoder(onnx_dir, "bisect", threads=2, max_seq_len=config.max_seq_len)
                merged = scores(Index(chunks, encoder.encode).rank, sets)  # type: ignore[arg-type]
            table.append(line(f"{variant}, merged int8 ONNX", before, merged))
            print(f"row: {table[-1]} ({time.perf_counter() - t:.0f} s)", flush=True)
        del model

    print(f"\n## Train bisect: {args.corpus}, {len(docs)} docs, {len(voted)} voted / {len(heldout)} held-out\n")
    print(
        "| variant | held-out nDCG@10 | hit@5 | P@5 | repeated nDCG@10 | hit@5 | P@5 |\n|---|---|---|---|---|---|---|"
    )
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
