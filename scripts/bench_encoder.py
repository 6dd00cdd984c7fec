"""Encoder throughput, side by side in one run: sentence-transformers fp32 (torch), the previous int8 graph and
the int8 graph `export_int8` writes now, on the same ~400 man-page chunks of ~1,000 characters.

    make bench-encoder            # = python scripts/bench_encoder.py --rounds 3

Prints, per round, chunks/s of each path (bulk embedding as ingest runs it: 2 workers of 1 thread for the ONNX
graphs, torch on 2 threads at batch 32) with the load average read just before; then batch-1 query latency
(p50/p99, 1 thread, as /ask runs it) and parity with torch (cosine mean/min, top-5 overlap). The chunks come from
man sections 2, 3, 5 and 7 only. Figures depend on the machine and its load: read them together with the
printed load.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import man_corpus  # noqa: E402
import numpy as np  # noqa: E402

from rag_autotune.adapters.onnx_encoder import OnnxEncoder  # noqa: E402
from rag_autotune.adapters.wordpiece import WordPiece  # noqa: E402
from rag_autotune.chunking import chunk_document, embed_text  # noqa: E402
from rag_autotune.domain import Document  # noqa: E402
from rag_autotune.training.export import (  # noqa: E402
    PROBE_SENTENCES,
    base_model_path,
    export_int8,
    parity,
)

SECTIONS = ("2", "3", "5", "7")  # never 1 or 8
CHUNK_CHARS = 1000
MIN_CHARS = 900


def man_chunks(n: int, seed: int) -> list[str]:
    """One chunk of 900-1,000 characters from each of n shuffled man pages, as ingest would embed it."""
    pages = man_corpus.list_pages(SECTIONS)
    random.Random(seed).shuffle(pages)
    out: list[str] = []
    for path in pages:
        rendered = man_corpus.render_page(path)
        if rendered is None:
            continue
        names, section, _desc, body = rendered
        doc = Document(path.name, f"{names[0]}({section})", body)
        chunk = next((c for c in chunk_document(doc, size=CHUNK_CHARS) if len(c.text) >= MIN_CHARS), None)
        if chunk is not None:
            out.append(embed_text(chunk))
            if len(out) == n:
                return out
    raise SystemExit(f"only {len(out)} chunks of >= {MIN_CHARS} chars in man sections {SECTIONS}")


def previous_export(new_folder: Path, out: Path) -> Path:
    """The graph the export wrote before: sentence-transformers' dynamic quantisation with optimum's avx2 preset."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    with tempfile.TemporaryDirectory(prefix="bench-prev-") as tmp:
        work = Path(tmp) / "st"
        shutil.copytree(base_model_path(), work, ignore=shutil.ignore_patterns("onnx", "openvino", "*.onnx"))
        onnx_model = SentenceTransformer(str(work), backend="onnx", device="cpu", local_files_only=True)
        export_dynamic_quantized_onnx_model(onnx_model, "avx2", str(work))
        out.mkdir(parents=True)
        shutil.copyfile(work / "onnx" / "model_quint8_avx2.onnx", out / "model.onnx")
    for name in ("tokenizer.json", "meta.json"):
        shutil.copyfile(new_folder / name, out / name)
    return out


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def rate(encode: Callable[[list[str]], object], chunks: list[str]) -> tuple[float, float]:
    """(chunks per wall second, chunks per CPU second of this process). On a shared machine the second is
    the steadier figure: two cores to itself would give the process about twice that rate."""
    started, cpu = time.perf_counter(), time.process_time()
    encode(chunks)
    return len(chunks) / (time.perf_counter() - started), len(chunks) / (time.process_time() - cpu)


def latencies_ms(encoder: OnnxEncoder, queries: Sequence[str], calls: int) -> list[float]:
    out = []
    for i in range(calls):
        started = time.perf_counter()
        encoder.encode([queries[i % len(queries)]])
        out.append((time.perf_counter() - started) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--chunks", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--query-calls", type=int, default=400, help="batch-1 encodes per graph for p50/p99")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    warnings.simplefilter("ignore")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    print(f"cpus {os.cpu_count()}  {load()}  building {args.chunks} chunks from man sections {','.join(SECTIONS)}")
    chunks = man_chunks(args.chunks, args.seed)
    print(f"chunks {len(chunks)}, mean {statistics.mean(map(len, chunks)):.0f} chars")

    model = SentenceTransformer(str(base_model_path()), device="cpu")
    with tempfile.TemporaryDirectory(prefix="bench-encoder-") as tmp:
        new_dir = export_int8(base_model_path(), Path(tmp) / "new")
        old_dir = previous_export(new_dir, Path(tmp) / "old")
        bulk = {
            "old int8": OnnxEncoder(old_dir, "old", threads=1, workers=2),
            "new int8": OnnxEncoder(new_dir, "new", threads=1, workers=2),
        }
        for enc in bulk.values():
            enc.encode(chunks[:4])  # warm-up: first-run allocations
        tokenizer = WordPiece.from_file(new_dir / "tokenizer.json", 256)
        tokens = [len(tokenizer.encode(c)) for c in chunks[:50]]
        print(f"tokens per chunk (first 50): mean {statistics.mean(tokens):.0f}, max {max(tokens)}")
        cpu = time.process_time()
        fresh = WordPiece.from_file(new_dir / "tokenizer.json", 256)
        for c in chunks:
            fresh.encode(c)
        fast = time.process_time() - cpu
        cpu = time.process_time()
        fresh = WordPiece.from_file(new_dir / "tokenizer.json", 256)
        for c in chunks:  # the general (Unicode) path, which every text took before the ASCII fast path
            for word in fresh._words(fresh._normalise(c)):
                fresh._pieces(word)
        general = time.process_time() - cpu
        print(f"tokenise {len(chunks)} chunks: {fast:.2f} CPU-s (ASCII path), {general:.2f} CPU-s (general path)")

        def st_encode(texts: list[str]) -> object:
            return model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)

        paths: dict[str, Callable[[list[str]], object]] = {"sentence-transformers fp32": st_encode}
        paths.update({name: enc.encode for name, enc in bulk.items()})
        rates: dict[str, list[float]] = {name: [] for name in paths}
        per_cpu: dict[str, list[float]] = {name: [] for name in paths}
        print("\nbulk chunks/s (ONNX: 2 workers x 1 thread; torch: 2 threads, batch 32); [chunks per CPU-second]")
        for r in range(args.rounds):
            row = []
            for name, encode in paths.items():
                before = load()
                wall, cpu = rate(encode, chunks)
                rates[name].append(wall)
                per_cpu[name].append(cpu)
                row.append(f"{name} {wall:5.1f} [{cpu:4.1f}] ({before})")
            print(f"  round {r + 1}: " + " | ".join(row), flush=True)
        base = rates["sentence-transformers fp32"]
        for name, values in rates.items():
            ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
            print(
                f"  {name:27s} median {statistics.median(values):5.1f}  best {max(values):5.1f} chunks/s"
                f"  x{ratio:.2f} sentence-transformers (median of per-round ratios)"
                f"  [{statistics.median(per_cpu[name]):4.1f} chunks per CPU-second]"
            )

        print(f"\nbatch-1 query latency (1 thread, {args.query_calls} calls each, interleaved), {load()}")
        single = {
            name: OnnxEncoder(folder, name, threads=1)
            for name, folder in (("old int8", old_dir), ("new int8", new_dir))
        }
        lat: dict[str, list[float]] = {name: [] for name in single}
        for enc in single.values():
            latencies_ms(enc, PROBE_SENTENCES, 20)
        for _ in range(4):
            for name, enc in single.items():
                lat[name] += latencies_ms(enc, PROBE_SENTENCES, args.query_calls // 4)
        for name, values in lat.items():
            print(f"  {name:9s} p50 {pct(values, 50):5.2f} ms  p99 {pct(values, 99):5.2f} ms")

        print("\nparity with torch fp32 (cosine over the probe queries + chunks; top-5 overlap of probes over chunks)")
        texts = list(PROBE_SENTENCES) + chunks
        reference = np.asarray(st_encode(texts), dtype=np.float32)
        for name, enc in bulk.items():
            report = parity(lambda _texts: reference, enc, list(PROBE_SENTENCES), chunks)
            print(
                f"  {name:9s} mean {report.mean_cosine:.4f}  min {report.min_cosine:.4f}"
                f"  top5 {report.top5_overlap:.3f}  n {report.n}"
            )
    print(f"\ndone, {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
