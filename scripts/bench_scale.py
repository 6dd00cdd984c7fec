"""`make bench-scale`: ingest, the nightly embed fan-out, training and /ask at growing sizes (issue 13's
benchmark). Printed figures, not timed tests. Parts (`--parts`, all by default):

- ingest: man pages of sections 2/3/5/7 (scripts/man_corpus.py; never 1 or 8, kept for evaluation), copied
  with varied ids and titles until --chunks chunks (a copy's title differs, so its text is embedded again),
  ingested into the embedded default (moto as AWS); then the unchanged corpus again (must embed 0 chunks) and
  a corpus with 1% of its pages edited.
- fanout: the tune's embed fan-out on that live version, as the local stack runs it: the Plan, EmbedShard
  and Assemble functions of template.yaml, each invocation its own process through the local Lambda runner,
  the map items --workers at a time (the Map's MaxConcurrency), each encoding on --threads threads (one
  Lambda vCPU each by default). Prints wall time per step, chunks/s in all and per worker, the peak RSS of
  each step's processes (VmHWM, polled), and the speedup over one worker.
- train: the train step at --votes simulated votes (scripts/bench_train_budget.py's machinery) with a
  --budget-s training budget: seconds per optimizer step, steps planned and steps that fit the budget.
- query: /ask's encode + search (dense, top_k 5 x oversampling 4, the query encoder on one thread) over one
  Edge shard of --vectors synthetic unit vectors (search cost depends on the number and dimension of the
  vectors, not on what they mean; shards from 50k points get an HNSW graph, as served), p50/p99, and the
  cold start: query encoder load, shard unpack + open, first query.
- projection: the fan-out on AWS from the measured per-worker rate (scripts/scale_projection.py), the
  assumptions printed, for the measured sizes and 100k and 1M chunks; written as a markdown table and as
  docs/bench-scale.svg.

The defaults (5k chunks; 1 and 2 workers; 1k and 3k votes; 20k and 100k vectors) take about 30 to 40 minutes
on an idle 2-core machine. The issue's sizes:
    make bench-scale ARGS="--chunks 5000,20000,80000 --votes 1000,3000,10000 --vectors 20000,100000,500000"
Each part adds its figures to --results (JSON), so a later `--parts projection` reuses what earlier runs
measured."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "layers" / "serve" / "python"), str(REPO), str(REPO / "scripts")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import bench_stack  # noqa: E402
import bench_train_budget  # noqa: E402
import bench_vector_index  # noqa: E402
import man_corpus  # noqa: E402
import scale_projection  # noqa: E402
import svg_chart  # noqa: E402

from rag_autotune.domain import VersionPair  # noqa: E402
from rag_autotune.local import lambdas  # noqa: E402
from rag_autotune.settings import Settings  # noqa: E402
from rag_autotune.tune.fanout import shard_chunks  # noqa: E402
from rag_autotune.tune.state import RunCounts, RunState, ShardItem  # noqa: E402
from rag_autotune.versions import read_manifest  # noqa: E402

SECTIONS = ("2", "3", "5", "7")  # never 1 or 8: kept for evaluation
QUIET = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true"}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


# ---------------------------------------------------------------------------------------------- corpus


def man_pages(cache: Path, seed: int) -> tuple[list[man_corpus.Doc], list[man_corpus.Query]]:
    """Every usable page of SECTIONS, rendered once and kept in `cache`."""
    if not cache.exists():
        docs, queries = man_corpus.build(SECTIONS, None, seed)
        cache.write_text(json.dumps({"docs": docs, "queries": queries}))
    data = json.loads(cache.read_text())
    return data["docs"], data["queries"]


def grown(docs: list[man_corpus.Doc], target: int) -> list[man_corpus.Doc]:
    """Pages, then copies of them with varied ids and titles, until `target` chunks."""
    from rag_autotune.chunking import chunk_document
    from rag_autotune.domain import Document

    per_doc = [len(chunk_document(Document(d["id"], d["title"], d["text"]))) for d in docs]
    out: list[man_corpus.Doc] = []
    made, copy = 0, 0
    while made < target:
        for d, n in zip(docs, per_doc, strict=True):
            if made >= target:
                break
            if copy == 0:
                out.append(d)
            else:
                out.append({"id": f"{d['id']}~{copy}", "title": f"{d['title']} (copy {copy})", "text": d["text"]})
            made += n
        copy += 1
    return out


def edited(docs: list[man_corpus.Doc], fraction: float) -> list[man_corpus.Doc]:
    """The same pages, every 1/fraction-th with a sentence appended."""
    step = max(1, round(1 / fraction))
    return [
        {**d, "text": d["text"] + "\n\nEdited for the re-ingest benchmark."} if i % step == 0 else d
        for i, d in enumerate(docs)
    ]


def write_corpus(path: Path, docs: list[man_corpus.Doc], per_file: int = 2000) -> Path:
    """A folder of JSONL files, as a large site would export it: one file would pass ingest's size limit
    (RAG_INGEST_MAX_FILE_MB) past about 50k chunks."""
    path.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(docs), per_file):
        man_corpus.write_jsonl(path / f"part-{i // per_file:05d}.jsonl", docs[i : i + per_file])
    return path


# ---------------------------------------------------------------------------------------------- peak RSS


class PeakRss:
    """The peak RSS (VmHWM) of each local Lambda process this process starts, polled from /proc. VmHWM is the
    process's own high-water mark, so a poll misses only what it grows in its last interval."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.peaks: dict[int, tuple[str, int]] = {}  # pid → (handler file, peak kB)
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(self._every):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                with contextlib.suppress(OSError, ValueError, IndexError):
                    if (proc / "stat").read_text().rsplit(")", 1)[1].split()[1] != me:
                        continue
                    argv = (proc / "cmdline").read_bytes().split(b"\0")
                    if b"rag_autotune.local.invoke" not in argv:
                        continue
                    status = (proc / "status").read_text()
                    kb = int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1])
                    name = Path(argv[argv.index(b"rag_autotune.local.invoke") + 1].decode()).stem
                    self.peaks[int(proc.name)] = (name, max(kb, self.peaks.get(int(proc.name), ("", 0))[1]))

    def max_mb(self, handler: str) -> float:
        return max((kb for name, kb in self.peaks.values() if name == handler), default=0) / 1024


# ---------------------------------------------------------------------------------------------- ingest


def ingest_part(bench: bench_stack.BenchStack, docs: list[man_corpus.Doc], tmp: Path) -> dict[str, Any]:
    """The first ingest (timed without the base model's bootstrap), the unchanged corpus again, then 1% edited."""
    from rag_autotune.ingest import ingest
    from rag_autotune.training.bootstrap import bootstrap

    rt = bench.rt
    out: dict[str, Any] = {"documents": len(docs)}
    bootstrap(rt.store, rt.settings.cache_dir)
    corpus = write_corpus(tmp / "corpus", docs)
    t = time.perf_counter()
    report = bench_stack.bootstrap_and_ingest(bench, corpus)  # the model is there already: ingest only
    out.update(chunks=report.chunks, embedded=report.embedded, s=round(time.perf_counter() - t, 1))
    out["chunks_per_s"] = round(report.embedded / out["s"], 1)
    for name, corpus in (("unchanged", docs), ("edited_1pct", edited(docs, 0.01))):
        t = time.perf_counter()
        r = ingest(
            write_corpus(tmp / f"corpus-{name}", corpus),
            store=rt.store,
            index=rt.index,
            load_encoder=rt.load_bulk_encoder,
            chunk_chars=rt.settings.chunk_chars,
            chunk_overlap=rt.settings.chunk_overlap,
        )
        out[name] = {"s": round(time.perf_counter() - t, 1), "embedded": r.embedded, "reused": r.reused}
        print(f"re-ingest {name}: embedded {r.embedded}, reused {r.reused}, {out[name]['s']} s", flush=True)
    out["load"] = load()
    return out


# ---------------------------------------------------------------------------------------------- fan-out


def fanout_run(bench: bench_stack.BenchStack, workers: int, threads: int, item_chunks: int) -> dict[str, Any]:
    """Plan → the map items, `workers` at a time, each its own process → Assemble, as the local stack's Step
    Functions Map runs them; the candidate reuses the live model (a tune run's would be the trained one)."""
    live = read_manifest(bench.rt.store)
    assert live is not None
    pair = live[0].live
    env = {
        **QUIET,
        "RAG_EMBED_THREADS": str(threads),
        # Plan sizes items from the rate it assumes; item_chunks chunks per item here.
        "RAG_TUNE_EMBED_CHUNKS_PER_S": "1",
        "RAG_TUNE_EMBED_ITEM_S": str(item_chunks),
    }
    fns = {
        k: dataclasses.replace(f, env={**f.env, **env})
        for k, f in lambdas.functions_from_template(REPO / "template.yaml").items()
    }
    run_id = f"scale-{workers}w-{uuid.uuid4().hex[:6]}"
    candidate = VersionPair(pair.model_version, f"{pair.model_version}-c{900 + workers}")
    state = RunState(
        run_id=run_id,
        status="RUNNING",
        live=pair,
        live_etag='"bench"',
        counts=RunCounts(votes=0, new_votes=0, triplets=0),
        prefix=f"runs/{run_id}/",
        candidate=candidate,
    )
    invoke = lambda fn, event: _invoke(fns[fn], event)  # noqa: E731
    # What every invocation pays before its work: a process, the imports, the handler module's Runtime.
    t = time.perf_counter()
    with contextlib.suppress(RuntimeError):
        invoke("TuneEmbedFunction", {})  # refused at once: not a ShardTask
    cold_s = time.perf_counter() - t
    with PeakRss() as rss:
        t0 = time.perf_counter()
        planned = RunState.from_event(invoke("TunePlanFunction", state.to_event()))
        t1 = time.perf_counter()
        items = [ShardItem.from_event(i) for i in json.loads(bench.rt.store.get_bytes(planned.planned.items))]
        item_s: list[float] = []

        def one(item: ShardItem) -> None:
            t = time.perf_counter()
            invoke("TuneEmbedFunction", {"run": planned.to_event(), "item": item.to_event()})
            item_s.append(time.perf_counter() - t)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, items))
        t2 = time.perf_counter()
        done = RunState.from_event(invoke("TuneAssembleFunction", planned.to_event()))
        t3 = time.perf_counter()
    bench.rt.index.delete(candidate.index_version)
    chunks = planned.planned.chunks
    assert done.embedded == chunks, (done.embedded, chunks)
    return {
        "workers": workers,
        "threads": threads,
        "chunks": chunks,
        "items": len(items),
        "plan_s": round(t1 - t0, 1),
        "map_s": round(t2 - t1, 1),
        "assemble_s": round(t3 - t2, 1),
        "item_s_mean": round(float(np.mean(item_s)), 1),
        "invocation_cold_s": round(cold_s, 2),
        "chunks_per_s": round(chunks / (t2 - t1), 1),
        "chunks_per_s_per_worker": round(chunks / (t2 - t1) / workers, 1),
        "rss_mb": {h: round(rss.max_mb(h)) for h in ("plan", "embed", "assemble")},
        "load": load(),
    }


def _invoke(fn: lambdas.LocalFunction, event: dict[str, Any]) -> dict[str, Any]:
    payload, errored = lambdas.run_local(fn, json.dumps(event))
    if errored:
        raise RuntimeError(f"{fn.logical_id} failed: {payload[:2000]!r}")
    result: dict[str, Any] = json.loads(payload)
    return result


def size_part(
    chunks: int, workers: list[int], args: argparse.Namespace, docs: list[man_corpus.Doc], parts: set[str]
) -> dict[str, Any]:
    corpus = grown(docs, chunks)
    out: dict[str, Any] = {"target": chunks}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        bench = bench_stack.start("scale", Path(tmp) / "cache")
        try:
            out["ingest"] = ingest_part(bench, corpus, Path(tmp))
            print(json.dumps({"ingest": out["ingest"]}), flush=True)
            if "fanout" in parts:
                out["fanout"] = []
                for w in workers:
                    r = fanout_run(bench, w, args.threads, args.item_chunks)
                    print(json.dumps({"fanout": r}), flush=True)
                    out["fanout"].append(r)
        finally:
            bench.stop()
    return out


def print_sizes(sizes: list[dict[str, Any]]) -> None:
    print("\n## Ingest (all cores) and re-ingest\n")
    print(
        "| chunks | documents | ingest | chunks/s | re-ingest unchanged: embedded | 1% of pages edited: embedded "
        "| load |"
    )
    print("|---|---|---|---|---|---|---|")
    for s in sizes:
        i = s["ingest"]
        print(
            f"| {i['chunks']:,} | {i['documents']:,} | {i['s']:.0f} s | {i['chunks_per_s']} "
            f"| {i['unchanged']['embedded']} ({i['unchanged']['s']:.0f} s) "
            f"| {i['edited_1pct']['embedded']} ({i['edited_1pct']['s']:.0f} s) | {i['load']} |"
        )
    rows = [(s, f) for s in sizes for f in s.get("fanout", [])]
    if not rows:
        return
    print("\n## Embed fan-out (Plan → Map → Assemble, each invocation its own process)\n")
    print(
        "| chunks | workers × threads | items | plan | map | assemble | chunks/s | per worker | speedup "
        "| peak RSS plan / embed item / assemble | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s, f in rows:
        one = next((g for g in s["fanout"] if g["workers"] == 1), None)
        speedup = f"{f['chunks_per_s'] / one['chunks_per_s']:.2f}×" if one else "-"
        r = f["rss_mb"]
        print(
            f"| {f['chunks']:,} | {f['workers']} × {f['threads']} | {f['items']} | {f['plan_s']:.0f} s "
            f"| {f['map_s']:.0f} s | {f['assemble_s']:.0f} s | {f['chunks_per_s']} | {f['chunks_per_s_per_worker']} "
            f"| {speedup} | {r['plan']} / {r['embed']} / {r['assemble']} MB | {f['load']} |"
        )


# ---------------------------------------------------------------------------------------------- train


def train_part(args: argparse.Namespace, docs: list[man_corpus.Doc], queries: list[man_corpus.Query]) -> list[dict]:
    shown, texts = bench_train_budget.shown_and_texts(docs)
    print(f"train: {len(docs)} pages, {len(texts)} chunks, {len(queries)} questions; budget {args.budget_s:.0f} s")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-train-") as tmp:
        for n in args.votes:
            before = load()
            votes = bench_train_budget.simulated_votes(queries, shown, n, args.seed)
            r = bench_train_budget.run(votes, texts, args.budget_s, Path(tmp))
            r["load"] = f"{before} → {load()}"
            print(json.dumps(r), flush=True)
            results.append(r)
    return results


# ---------------------------------------------------------------------------------------------- query


def query_part(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """encode + search p50/p99 and cold start over one Edge shard of n synthetic vectors, per n."""
    from rag_autotune.adapters.onnx_encoder import OnnxEncoder
    from rag_autotune.adapters.qdrant_edge import EdgeVectorIndex
    from rag_autotune.runtime import fetch_model
    from rag_autotune.training.bootstrap import bootstrap
    from tests.fakes import MemoryArtifactStore

    settings = Settings(cache_dir=tmp)
    store = MemoryArtifactStore()
    bootstrap(store, tmp)
    model = fetch_model(store, "v0", tmp)
    questions = [json.loads(x)["query"] for x in (REPO / "demo" / "golden.jsonl").read_text().splitlines()]
    out = []
    for n in args.vectors:
        chunks, vecs = bench_vector_index.data(n, 384, args.text_chars)
        t = time.perf_counter()
        builder = EdgeVectorIndex(store, tmp / f"build-{n}", hnsw_threshold=args.hnsw_threshold)
        builder.build(f"v0-n{n}", 384, bench_vector_index.batches(chunks, vecs))
        build_s = time.perf_counter() - t
        del chunks, vecs
        # The cold start, as a new Lambda environment pays it: the query encoder, the shard, the first answer.
        t0 = time.perf_counter()
        encoder = OnnxEncoder(model, "v0", threads=settings.onnx_threads, max_seq_len=settings.max_seq_len)
        t1 = time.perf_counter()
        index = EdgeVectorIndex(store, tmp / f"read-{n}")
        index.warm(f"v0-n{n}")
        t2 = time.perf_counter()
        index.query(f"v0-n{n}", encoder.encode([questions[0]])[0], questions[0], 20, "dense", None)
        t3 = time.perf_counter()
        ms = []
        for i in range(args.requests):
            q = questions[i % len(questions)]
            t = time.perf_counter()
            index.query(f"v0-n{n}", encoder.encode([q])[0], q, 20, "dense", None)
            ms.append((time.perf_counter() - t) * 1000)
        index.close()
        store.delete_prefix(f"indexes/v0-n{n}/")
        info = {
            "vectors": n,
            "build_s": round(build_s, 1),
            "hnsw": n >= args.hnsw_threshold,
            "encoder_load_s": round(t1 - t0, 2),
            "open_s": round(t2 - t1, 2),
            "first_ms": round((t3 - t2) * 1000, 1),
            "p50_ms": round(pct(ms, 50), 2),
            "p99_ms": round(pct(ms, 99), 2),
            "n": len(ms),
            "load": load(),
        }
        print(json.dumps(info), flush=True)
        out.append(info)
    return out


def print_query(rows: list[dict[str, Any]]) -> None:
    print("\n## /ask encode + search over one Edge shard (synthetic vectors)\n")
    print("| vectors | HNSW | build | cold start: encoder / open shard / first query | p50 | p99 | n | load |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['vectors']:,} | {'yes' if r['hnsw'] else 'no'} | {r['build_s']:.0f} s | {r['encoder_load_s']:.2f} s "
            f"/ {r['open_s']:.2f} s / {r['first_ms']:.0f} ms | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['n']} "
            f"| {r['load']} |"
        )


# ---------------------------------------------------------------------------------------------- projection


def source_row(results: dict[str, Any]) -> dict[str, Any]:
    """The largest fan-out row measured with one worker: the projection's rates come from it."""
    ones = [f for s in results.get("sizes", []) for f in s.get("fanout", []) if f["workers"] == 1]
    if not ones:
        raise SystemExit("projection: no one-worker fan-out measured yet (run --parts fanout first)")
    return max(ones, key=lambda f: f["chunks"])


def assumptions(results: dict[str, Any], args: argparse.Namespace) -> scale_projection.Assumptions:
    """From the largest fan-out row measured with one worker (one thread: one vCPU) and the HNSW builds. When
    that row's Assemble built an HNSW graph itself (at or past the threshold), its rate already includes the
    build, on real embeddings: the synthetic shards' build rate is not added on top."""
    f = source_row(results)
    hnsw = [q for q in results.get("query", []) if q["hnsw"]]
    # Each invocation's start-up, measured apart, is the per-item overhead, not encoding (nor per-chunk work).
    cold = f["invocation_cold_s"]
    per_vcpu = f["chunks"] / max(1e-9, f["map_s"] - f["items"] * cold) / f["threads"]
    return scale_projection.Assumptions(
        chunks_per_s_per_vcpu=per_vcpu,
        plan_s_per_chunk=max(0.0, f["plan_s"] - cold) / f["chunks"],
        assemble_s_per_chunk=max(0.0, f["assemble_s"] - cold) / f["chunks"],
        hnsw_s_per_point=0.0
        if f["chunks"] >= args.hnsw_threshold
        else max((q["build_s"] / q["vectors"] for q in hnsw), default=0.0),
        hnsw_threshold=args.hnsw_threshold,
        max_concurrency=args.max_concurrency,
        memory_mb=args.memory_mb,
        item_overhead_s=args.item_overhead_s if args.item_overhead_s is not None else cold,
        shard_chunks=shard_chunks(Settings()),
    )


def projection_part(results: dict[str, Any], args: argparse.Namespace) -> None:
    a = assumptions(results, args)
    source = source_row(results)["chunks"]
    print("\n## Projection to AWS (arithmetic from the rates measured here, scripts/scale_projection.py)\n")
    print(
        f"assumptions: {a.chunks_per_s_per_vcpu:.1f} chunks/s per vCPU (one local worker, one thread), scaled "
        f"linearly to the {scale_projection.vcpus(a.memory_mb):.2f} vCPUs of a {a.memory_mb} MB embed function "
        f"(Lambda: {scale_projection.MB_PER_VCPU} MB = 1 vCPU, up to {scale_projection.MAX_VCPU} at "
        f"{scale_projection.MAX_MEMORY_MB} MB); MaxConcurrency {a.max_concurrency}; {a.shard_chunks} chunks per item; "
        f"{a.item_overhead_s:.1f} s overhead per item (a local invocation's start-up unless given); "
        f"Plan {a.plan_s_per_chunk * 1000:.2f} ms and Assemble "
        f"{a.assemble_s_per_chunk * 1000:.2f} ms per chunk as measured locally at {source:,} chunks, "
        + (
            f"HNSW build included (from {a.hnsw_threshold:,} points; linear past it)"
            if source >= a.hnsw_threshold
            else f"plus {a.hnsw_s_per_point * 1000:.2f} ms per point of HNSW build from {a.hnsw_threshold:,} points "
            f"({'measured in the query part, on this machine' if a.hnsw_s_per_point else 'not measured: 0'})"
        )
        + "; "
        f"${scale_projection.USD_PER_GB_S} per GB-s"
    )
    measured = sorted({f["chunks"] for s in results.get("sizes", []) for f in s.get("fanout", [])})
    sizes = sorted(set(measured) | {100_000, 1_000_000})
    rows = [scale_projection.project(n, a) for n in sizes]
    print(scale_projection.markdown(rows))
    wall = {
        f"MaxConcurrency {c}": [
            (p.chunks, p.wall_s / 60)
            for p in (scale_projection.project(n, dataclasses.replace(a, max_concurrency=c)) for n in sizes)
        ]
        for c in sorted({10, a.max_concurrency, 1000})
    }
    cost = {f"{a.memory_mb} MB embed functions": [(p.chunks, p.gb_s) for p in rows]}
    svg = svg_chart.side_by_side(
        [
            svg_chart.line_chart("Nightly embed fan-out: wall time", "chunks", "minutes", wall),
            svg_chart.line_chart("Nightly embed fan-out: Lambda GB-seconds", "chunks", "GB-s", cost),
        ]
    )
    args.svg.write_text(svg)
    print(f"\nplot: {args.svg.relative_to(REPO) if args.svg.is_relative_to(REPO) else args.svg}")


# ---------------------------------------------------------------------------------------------- main


def ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="ingest,fanout,train,query,projection")
    ap.add_argument("--chunks", type=ints, default=[5000])
    ap.add_argument("--workers", type=ints, default=[1, 2])
    ap.add_argument("--threads", type=int, default=1, help="encoder threads per map item (1: one Lambda vCPU)")
    ap.add_argument("--item-chunks", type=int, default=500, help="chunks per map item in the local fan-out")
    ap.add_argument("--votes", type=ints, default=[1000, 3000])
    # Loading the model and timing the first 3 steps take about 50 s on 2 cores: less fits no step at all.
    ap.add_argument("--budget-s", type=float, default=150.0, help="training budget per vote volume")
    ap.add_argument("--vectors", type=ints, default=[20_000, 100_000])
    ap.add_argument("--requests", type=int, default=1000, help="queries timed per shard size")
    ap.add_argument("--text-chars", type=int, default=300, help="payload text per synthetic point")
    ap.add_argument("--max-concurrency", type=int, default=100, help="projection: the Map's MaxConcurrency")
    ap.add_argument("--memory-mb", type=int, default=3008, help="projection: the embed function's memory")
    ap.add_argument("--item-overhead-s", type=float, help="projection: per map item (default: the local one)")
    ap.add_argument("--hnsw-threshold", type=int, default=50_000, help="query: HNSW from this many points")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", type=Path, default=REPO / "build" / "bench-scale.json")
    ap.add_argument("--svg", type=Path, default=REPO / "docs" / "bench-scale.svg")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    results: dict[str, Any] = json.loads(args.results.read_text()) if args.results.exists() else {}
    print(f"bench-scale: {os.cpu_count()} cores, {load()}", flush=True)

    def save() -> None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1))

    docs: list[man_corpus.Doc] = []
    queries: list[man_corpus.Query] = []
    if parts & {"ingest", "fanout", "train"}:
        t = time.time()
        docs, queries = man_pages(Path(tempfile.gettempdir()) / f"bench-scale-man-{args.seed}.json", args.seed)
        print(f"man pages of sections {','.join(SECTIONS)}: {len(docs)} pages ({time.time() - t:.0f} s)", flush=True)
    if parts & {"ingest", "fanout"}:
        results["sizes"] = []
        for n in args.chunks:
            results["sizes"].append(size_part(n, args.workers, args, docs, parts))
            save()
        print_sizes(results["sizes"])
    if "train" in parts:
        results["train"] = train_part(args, docs, queries)
        save()
        print(f"\n## Train step at {args.budget_s:.0f} s of training budget\n")
        bench_train_budget.print_table(results["train"])
        for r in results["train"]:
            print(f"  {r['votes']} votes: {r['load']}")
    if "query" in parts:
        with tempfile.TemporaryDirectory(prefix="bench-scale-query-") as tmp:
            results["query"] = query_part(args, Path(tmp))
        save()
        print_query(results["query"])
    if "projection" in parts:
        projection_part(results, args)
    print(f"\nbench-scale done: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
