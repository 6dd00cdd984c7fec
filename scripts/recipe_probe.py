"""Recipe probe for the nightly LoRA train step (an experiment harness, not a test).

Man pages (sections 2,3,5,7, ~1.7k docs) → chunks → int8 ONNX base embeddings → numpy brute-force search.
Simulated users on HALF of the queries (seeded) each see the top 5 documents and vote 👍 on relevant ones,
👎 on the rest, until ~500 votes. The votes go through rag_autotune.tune.dataset (group_votes → split with
held-out fraction 0 → triplets), exactly as Prepare turns them into train.jsonl. Then train_lora → merge →
export_int8 → re-embed, and nDCG@10 / P@5 / hit@5 before → after on:

    repeated   the voted queries, ground-truth relevance (every page sharing the NAME description)
    repeated+  the voted queries with ≥1 👍, relevance = the 👍 documents (what the Smoke step measures)
    held-out   the other half of the queries, never voted on, ground-truth relevance

    PYTHONPATH=layers/serve/python:. python scripts/recipe_probe.py --rank 32 --lr 5e-4 --epochs 2

Chunking: `--chunking all` embeds every chunk (ingest's chunk_document with Settings' chunk size/overlap;
~6.3k chunks, slow on 2 busy cores); `--chunking first` (default, for sweeps) keeps only the first chunk of
each document (≤ chunk_chars characters). Either way the encoder sees embed_text(chunk) (title + text) as
ingest does, a document ranks by its best chunk, and a vote names the chunk that was shown.
Base-model embeddings are cached in --cache; one JSON line per run is appended to <cache>/results.jsonl.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # 2 shared cores: spinning OpenMP threads cost 2-3x
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "serve" / "python"))

from rag_autotune.chunking import chunk_document, embed_text  # noqa: E402
from rag_autotune.domain import Chunk, Document, VersionPair, Vote  # noqa: E402
from rag_autotune.settings import Settings  # noqa: E402
from rag_autotune.training.lora import TrainConfig  # noqa: E402
from rag_autotune.tune.dataset import group_votes, split, triplets  # noqa: E402
from rag_autotune.tune.metrics import Judged, evaluate  # noqa: E402

Matrix = npt.NDArray[np.float32]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- corpus and index


def load_corpus(cache: Path) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    path = cache / "corpus.json"
    if path.exists():
        body = json.loads(path.read_text())
        return body["docs"], body["queries"]
    import man_corpus

    log("rendering man pages (sections 2,3,5,7, limit 2000)")
    docs, queries = man_corpus.build(["2", "3", "5", "7"], 2000, 0)
    path.write_text(json.dumps({"docs": docs, "queries": queries}))
    return [{"id": d["id"], "title": d["title"], "text": d["text"]} for d in docs], [dict(q) for q in queries]


def make_chunks(docs: Sequence[dict[str, str]], mode: str, settings: Settings) -> list[Chunk]:
    out: list[Chunk] = []
    for d in docs:
        chunks = chunk_document(Document(d["id"], d["title"], d["text"]), settings.chunk_chars, settings.chunk_overlap)
        out.extend(chunks[:1] if mode == "first" else chunks)
    return out


def base_int8(cache: Path, max_seq_len: int) -> Path:
    from rag_autotune.training.export import base_model_path, export_int8

    folder = cache / f"base-int8-{max_seq_len}"
    if not (folder / "meta.json").exists():
        log("exporting the base model to int8 ONNX")
        export_int8(base_model_path(), folder, max_seq_len=max_seq_len)
    return folder


def encoder(folder: Path, version: str, batch: int, max_seq_len: int) -> Any:
    from rag_autotune.adapters.onnx_encoder import OnnxEncoder

    return OnnxEncoder(folder, version, threads=2, max_seq_len=max_seq_len, batch_size=batch)


def embed_chunks(enc: Any, chunks: Sequence[Chunk]) -> Matrix:
    out = []
    step = 256
    for start in range(0, len(chunks), step):
        out.append(enc.encode([embed_text(c) for c in chunks[start : start + step]]))
        log(f"  embedded {min(start + step, len(chunks))}/{len(chunks)}")
    return np.concatenate(out).astype(np.float32)


def rankings(qvecs: Matrix, cvecs: Matrix, chunks: Sequence[Chunk], depth: int = 10) -> list[list[tuple[str, str]]]:
    """Per query: (doc_id, best chunk_id) best first, documents deduplicated, `depth` of them."""
    scores = qvecs @ cvecs.T
    order = np.argsort(-scores, axis=1, kind="stable")
    out = []
    for row in order:
        seen: dict[str, str] = {}
        for i in row:
            c = chunks[int(i)]
            seen.setdefault(c.doc_id, c.chunk_id)
            if len(seen) == depth:
                break
        out.append(list(seen.items()))
    return out


def metrics(
    ranked: Sequence[Sequence[tuple[str, str]]],
    idx: Sequence[int],
    relevant: dict[int, frozenset[str]],
    queries: Sequence[str],
) -> dict[str, float]:
    by_query = {queries[i]: [d for d, _ in ranked[i]] for i in idx}
    judged = [Judged(queries[i], relevant[i]) for i in idx]
    return evaluate(lambda q: by_query[q], judged)


# ---------------------------------------------------------------- simulated users


def simulate_votes(
    ranked: Sequence[Sequence[tuple[str, str]]],
    pool: Sequence[int],
    queries: Sequence[str],
    truth: Sequence[frozenset[str]],
    n_votes: int,
) -> list[Vote]:
    pair = VersionPair("v0", "v0-c1")
    votes: list[Vote] = []
    t = 1_700_000_000.0
    for qi in pool:
        if len(votes) >= n_votes:
            break
        for rank, (doc_id, chunk_id) in enumerate(ranked[qi][:5], start=1):
            t += 1
            kind = "up" if doc_id in truth[qi] else "down"
            votes.append(Vote(f"q{qi}", doc_id, chunk_id, kind, rank, queries[qi], pair, t))  # type: ignore[arg-type]
    return votes


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    d = TrainConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rank", type=int, default=d.rank)
    ap.add_argument("--alpha", type=int, default=None, help="default: 2 × rank")
    ap.add_argument("--dropout", type=float, default=d.dropout)
    ap.add_argument("--target-modules", default=",".join(d.target_modules), help="comma-separated, or all-linear")
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--epochs", type=int, default=d.epochs)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--max-seq-len", type=int, default=d.max_seq_len, help="training sequence length")
    ap.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    ap.add_argument("--weight-decay", type=float, default=d.weight_decay)
    ap.add_argument("--seed", type=int, default=d.seed, help="training seed")
    ap.add_argument("--mini-batch-size", type=int, default=d.mini_batch_size, help="GradCache; 0: plain MNRL")
    ap.add_argument("--attention-dropout", type=float, default=d.attention_dropout)
    ap.add_argument("--threads", type=int, default=d.threads)
    ap.add_argument("--votes", type=int, default=500)
    ap.add_argument("--sim-seed", type=int, default=0, help="which half of the queries is voted on")
    ap.add_argument("--chunking", choices=["first", "all"], default="first")
    ap.add_argument(
        "--positive-text",
        choices=["chunk", "embed"],
        default="chunk",
        help="triplet text: chunk.text (what Prepare writes) or embed_text (title + text)",
    )
    ap.add_argument(
        "--embed-batch",
        type=int,
        default=1,
        help="OnnxEncoder batch size (1 = serving; 32 is faster, int8 vectors shift slightly)",
    )
    ap.add_argument("--serve-seq-len", type=int, default=Settings().max_seq_len)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/recipe-probe"))
    ap.add_argument("--label", default="")
    ap.add_argument("--dry-run", action="store_true", help="stop after the baseline and the triplets")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    a.cache.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    wall0 = time.perf_counter()

    docs, qrows = load_corpus(a.cache)
    chunks = make_chunks(docs, a.chunking, settings)
    queries = [q["query"] for q in qrows]
    truth = [frozenset(q["relevant"]) for q in qrows]
    log(f"{len(docs)} docs, {len(chunks)} chunks ({a.chunking}), {len(queries)} queries")

    base_dir = base_int8(a.cache, a.serve_seq_len)
    base_enc = encoder(base_dir, "v0", a.embed_batch, a.serve_seq_len)
    emb_file = a.cache / f"base-{a.chunking}-b{a.embed_batch}-s{a.serve_seq_len}.npy"
    if emb_file.exists():
        base_c = np.load(emb_file)
    else:
        t = time.perf_counter()
        base_c = embed_chunks(base_enc, chunks)
        np.save(emb_file, base_c)
        log(f"base embeddings: {time.perf_counter() - t:.1f}s")
    base_q = base_enc.encode(queries)
    before = rankings(base_q, base_c, chunks)

    order = list(range(len(queries)))
    random.Random(a.sim_seed).shuffle(order)
    voted_pool, heldout = order[: len(order) // 2], sorted(order[len(order) // 2 :])
    votes = simulate_votes(before, voted_pool, queries, truth, a.votes)
    voted = sorted({int(v.query_id[1:]) for v in votes})
    ups: dict[int, set[str]] = {}
    for v in votes:
        if v.vote == "up":
            ups.setdefault(int(v.query_id[1:]), set()).add(v.doc_id)
    voted_up = sorted(ups)
    up_truth = {i: frozenset(s) for i, s in ups.items()}
    all_truth = dict(enumerate(truth))

    by_id = {c.chunk_id: c for c in chunks}
    text_of = (lambda cid: by_id[cid].text) if a.positive_text == "chunk" else (lambda cid: embed_text(by_id[cid]))
    groups = group_votes(votes)
    parts = split(groups, 0.0)
    rows = triplets(
        parts.train, lambda cid: text_of(cid) if cid in by_id else None, [c.text for c in chunks], seed=len(votes)
    )
    counts = {
        "votes": len(votes),
        "up": sum(v.vote == "up" for v in votes),
        "voted_queries": len(voted),
        "queries_with_up": len(voted_up),
        "triplets": len(rows),
        "hard_negatives": sum(t.hard for t in rows),
        "heldout_queries": len(heldout),
    }
    log(f"counts: {counts}")

    sets = {"repeated": (voted, all_truth), "repeated+": (voted_up, up_truth), "heldout": (heldout, all_truth)}
    m_before = {k: metrics(before, idx, rel, queries) for k, (idx, rel) in sets.items()}
    if a.dry_run:
        print(json.dumps({"counts": counts, "before": m_before}, indent=2))
        return 0

    from rag_autotune.adapters.onnx_encoder import OnnxEncoder
    from rag_autotune.training.export import (
        PROBE_SENTENCES,
        base_model_path,
        export_int8,
        parity,
        torch_encoder,
    )
    from rag_autotune.training.lora import load_model, merge_adapter, train_lora

    modules = (
        ("all-linear",)
        if a.target_modules == "all-linear"
        else tuple(m.strip() for m in a.target_modules.split(",") if m.strip())
    )
    config = TrainConfig(
        rank=a.rank,
        alpha=a.alpha or 2 * a.rank,
        dropout=a.dropout,
        target_modules=modules,
        lr=a.lr,
        epochs=a.epochs,
        batch_size=a.batch_size,
        max_seq_len=a.max_seq_len,
        warmup_ratio=a.warmup_ratio,
        weight_decay=a.weight_decay,
        seed=a.seed,
        threads=a.threads,
        mini_batch_size=a.mini_batch_size,
        attention_dropout=a.attention_dropout,
    )
    log(f"training {config}")
    model = load_model(base_model_path())
    result = train_lora(model, [(t.query, t.positive, t.negative) for t in rows], config)
    log(f"train: {result.seconds}s, {result.steps} steps, loss {result.loss_curve[:1]} → {result.loss_curve[-1:]}")
    texts = list(PROBE_SENTENCES)
    from rag_autotune.training.export import PROBE_CORPUS

    reference = torch_encoder(model)(texts + list(PROBE_CORPUS))
    merge_adapter(model)

    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        t = time.perf_counter()
        folder = export_int8(model, Path(tmp) / "v1", max_seq_len=a.serve_seq_len)
        export_s = time.perf_counter() - t
        cand = OnnxEncoder(folder, "v1", threads=2, max_seq_len=a.serve_seq_len)
        par = parity(lambda _texts: reference, cand, texts)
        log(f"export {export_s:.1f}s, parity {par}")
        enc = encoder(folder, "v1", a.embed_batch, a.serve_seq_len)
        t = time.perf_counter()
        new_c = embed_chunks(enc, chunks)
        new_q = enc.encode(queries)
        embed_s = time.perf_counter() - t
    after = rankings(new_q, new_c, chunks)
    m_after = {k: metrics(after, idx, rel, queries) for k, (idx, rel) in sets.items()}

    print(
        f"\nconfig: {json.dumps(config.as_dict())}  positive-text={a.positive_text} chunking={a.chunking} "
        f"embed-batch={a.embed_batch}"
    )
    print(f"counts: {counts}")
    print(f"{'set':<10} {'n':>4}  {'nDCG@10':>22}  {'P@5':>22}  {'hit@5':>22}")
    for k in sets:
        b, f = m_before[k], m_after[k]
        cells = "  ".join(f"{b[m]:.4f} → {f[m]:.4f} ({100 * (f[m] - b[m]):+5.1f})" for m in ("ndcg@10", "p@5", "hit@5"))
        print(f"{k:<10} {b['n']:>4}  {cells}")
    print(
        f"seconds: train {result.seconds:.1f} ({result.steps} steps), export {export_s:.1f}, "
        f"embed {embed_s:.1f} ({len(chunks)} chunks + {len(queries)} queries), "
        f"wall {time.perf_counter() - wall0:.1f}"
    )
    print(f"parity: mean {par.mean_cosine:.4f} min {par.min_cosine:.4f} top5 {par.top5_overlap:.3f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MB")
    record = {
        "label": a.label,
        "config": config.as_dict(),
        "positive_text": a.positive_text,
        "chunking": a.chunking,
        "embed_batch": a.embed_batch,
        "counts": counts,
        "before": m_before,
        "after": m_after,
        "train_s": result.seconds,
        "steps": result.steps,
        "export_s": round(export_s, 1),
        "embed_s": round(embed_s, 1),
        "parity": par.as_dict(),
        "loss_curve": result.loss_curve,
        "peak_rss_mb": round(peak_mb),
    }
    with (a.cache / "results.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
