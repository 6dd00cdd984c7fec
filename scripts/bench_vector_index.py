"""Benchmark the Qdrant Edge VectorIndex, in one process: build, snapshot size, cold load, search latency,
with and without HNSW (optimize()). Brute-force numpy is printed as the baseline.

    PYTHONPATH=layers/serve/python:. python scripts/bench_vector_index.py [--n 20000] [--dim 384]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from rag_autotune.adapters.qdrant_edge import EdgeVectorIndex
from rag_autotune.domain import Chunk
from rag_autotune.ports import Vectors
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--text-chars", type=int, default=800)
    ap.add_argument("--skip-hnsw", action="store_true", help="skip the optimize() run (minutes on a busy box)")
    args = ap.parse_args()

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


if __name__ == "__main__":
    main()
