"""Benchmark the Qdrant Edge VectorIndex, in one process: build, snapshot size, cold load, search latency,
with and without HNSW (optimize()). Brute-force numpy is printed as the baseline. Then the query cost by
retrieval mode (dense, dense + BM25 fused by RRF and by DBSF), each plain and steered by votes (the engine's
relevance feedback query, steering.py), on the demo corpus's real chunk texts grown to n points, all timed in
turns on the same questions (demo/golden.jsonl) so that the machine's load weighs on all alike.

    PYTHONPATH=layers/serve/python:. python scripts/bench_vector_index.py [--n 20000] [--dim 384]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from rag_autotune.adapters.qdrant_edge import EdgeVectorIndex
from rag_autotune.chunking import chunk_document
from rag_autotune.corpus import load_documents
from rag_autotune.domain import RETRIEVAL_MODES, Chunk
from rag_autotune.ports import Vectors
from rag_autotune.steering import Steer
from tests.fakes import MemoryArtifactStore


def data(n: int, dim: int, text_chars: int, seed: int = 0) -> tuple[list[Chunk], Vectors]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    text = ("lorem ipsum dolor sit amet " * (text_chars // 27 + 1))[:text_chars]
    chunks = [Chunk(f"doc{i // 4}#{i % 4}", f"doc{i // 4}", f"Document {i // 4}", text) for i in range(n)]
    return chunks, vecs


def batches(chunks: list[Chunk], vecs: Vectors, size: int = 256) -> Iterator[tuple[Sequence[Chunk], Vectors]]:
    for i in range(0, len(chunks), size):
        yield chunks[i : i + size], vecs[i : i + size]


def pct(samples: list[float]) -> str:
    ms = np.asarray(samples) * 1e3
    return f"p50 {np.percentile(ms, 50):.2f} ms  p99 {np.percentile(ms, 99):.2f} ms"


def run(
    label: str,
    hnsw_threshold: int,
    chunks: list[Chunk],
    vecs: Vectors,
    queries: Vectors,
    root: Path,
    efs: Sequence[int | None] = (None,),
) -> None:
    store = MemoryArtifactStore()
    builder = EdgeVectorIndex(store, root / f"{label}-build", hnsw_threshold=hnsw_threshold)
    t = time.perf_counter()
    n = builder.build("v0-c1", vecs.shape[1], batches(chunks, vecs))
    build_s = time.perf_counter() - t
    size_mb = len(store.objects["indexes/v0-c1/shard.tar"]) / 1e6

    exact = [{chunks[i].chunk_id for i in np.argpartition(-(vecs @ q), 5)[:5]} for q in queries]
    for ef in efs:
        reader = EdgeVectorIndex(store, root / f"{label}-read-{ef}", hnsw_ef=ef)
        t = time.perf_counter()
        reader.search("v0-c1", queries[0], 5)  # download + unpack + EdgeShard.load + one query
        cold_s = time.perf_counter() - t
        disk_mb = sum(p.stat().st_size for p in (root / f"{label}-read-{ef}").rglob("*") if p.is_file()) / 1e6

        lat: list[float] = []
        recall = 0
        for q, want in zip(queries, exact, strict=True):
            t = time.perf_counter()
            hits = reader.search("v0-c1", q, 5)
            lat.append(time.perf_counter() - t)
            recall += len(want & {h.chunk.chunk_id for h in hits})
        reader.close()
        name = label if ef is None else f"{label} ef={ef}"
        print(
            f"{name:>12}: {n} points; build {build_s:.2f} s; snapshot {size_mb:.1f} MB (tar.gz); "
            f"cold load {cold_s:.2f} s ({disk_mb:.0f} MB unpacked); search {pct(lat)}; "
            f"recall@5 {recall / (5 * len(queries)):.3f}"
        )


REPO = Path(__file__).resolve().parents[1]


def run_modes(n: int, dim: int, rounds: int, root: Path) -> None:
    docs, _ = load_documents(REPO / "demo" / "corpus.jsonl")
    real = [c for d in docs for c in chunk_document(d)]
    chunks = [Chunk(f"p{i}#0", f"p{i}", real[i % len(real)].title, real[i % len(real)].text) for i in range(n)]
    rng = np.random.default_rng(2)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    questions = [json.loads(x)["query"] for x in (REPO / "demo" / "golden.jsonl").read_text().splitlines()]
    index = EdgeVectorIndex(MemoryArtifactStore(), root / "modes")
    t = time.perf_counter()
    index.build("v0-c1", dim, batches(chunks, vecs))
    print(
        f"\nby mode: {n} points ({len(real)} real chunk texts, cycled), dense + BM25 built in "
        f"{time.perf_counter() - t:.1f} s; {rounds} rounds of {len(questions)} questions, modes in turns"
    )
    variants = [(m, False) for m in RETRIEVAL_MODES] + [(m, True) for m in RETRIEVAL_MODES]
    lat: dict[tuple[str, bool], list[float]] = {v: [] for v in variants}
    answered: dict[tuple[str, bool], set[str]] = {v: set() for v in variants}
    for r in range(rounds):
        for i, question in enumerate(questions):
            k = r * len(questions) + i
            q = vecs[k % n]
            # Steering as /ask sends it: one 👍 and one 👎 item (here two other points) and fitted-like coefficients.
            steer = Steer(vecs[(k + 1) % n], 2.0, vecs[(k + 2) % n], -1.0, 1.0, 1.0, 0.1, questions=1)
            order = variants if (r + i) % 2 == 0 else variants[::-1]
            for mode, steered in order:
                t = time.perf_counter()
                # /ask's depth: top_k 5 x oversampling 4
                found = index.query("v0-c1", q, question, 20, mode, steer if steered else None)
                lat[(mode, steered)].append(time.perf_counter() - t)
                answered[(mode, steered)].add(found.mode + (" steered" if found.steered else ""))
    index.close()
    for v in variants:
        name = v[0] + (" steered" if v[1] else "")
        print(f"{name:>20}: query (BM25 query embedding included) {pct(lat[v])}; answered {sorted(answered[v])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--text-chars", type=int, default=800)
    ap.add_argument("--skip-hnsw", action="store_true", help="skip the optimize() run (minutes on a busy box)")
    ap.add_argument("--modes-only", action="store_true", help="only the dense vs hybrid query cost")
    ap.add_argument("--rounds", type=int, default=20, help="rounds over the golden questions, by mode")
    args = ap.parse_args()
    if args.modes_only:
        with tempfile.TemporaryDirectory(prefix="bench-vi-") as tmp:
            run_modes(args.n, args.dim, args.rounds, Path(tmp))
        return

    chunks, vecs = data(args.n, args.dim, args.text_chars)
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    lat = []
    for q in queries:
        t = time.perf_counter()
        scores = vecs @ q
        top = np.argpartition(-scores, 5)[:5]
        top[np.argsort(-scores[top])]
        lat.append(time.perf_counter() - t)
    print(f"{'numpy brute':>12}: {pct(lat)}")

    with tempfile.TemporaryDirectory(prefix="bench-vi-") as tmp:
        run("plain", 1 << 62, chunks, vecs, queries, Path(tmp))
        if not args.skip_hnsw:
            run("hnsw", 0, chunks, vecs, queries, Path(tmp), efs=(None, 256))
        run_modes(args.n, args.dim, args.rounds, Path(tmp))


if __name__ == "__main__":
    main()
