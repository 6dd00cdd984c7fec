"""`make bench-query`: the query path's speed on this machine, printed as a table.

- /ask over HTTP: p50/p99 over >= 1000 sequential requests on a 20k-chunk corpus. The API runs in its own
  process (`rag-autotune serve`, one request at a time like one Lambda instance); moto is the AWS endpoint.
  One row per retrieval mode (dense, then dense + BM25 fused by RRF and by DBSF: the version's stats name the
  mode, as a tune run's smoke step leaves them), with the modes the answers reported (`--modes-only`: just these).
- the same handler in-process (API Gateway event in, response out: no HTTP);
- the same /ask with a feedback memory of 10k remembered votes (a shipped snapshot, as a tune run leaves it)
  (refresh every RAG_MEMORY_REFRESH_S, off the request path); then again while new votes arrive in DynamoDB
  (one every 0.2 s from another process, as other instances would record them, so each refresh has work),
  and, as the control for that, the same writers with the memory off: locally the writes land in the same
  moto process and on the same 2 cores as the measured API, which AWS's DynamoDB would not;
- cold start: a fresh process importing the API module (loading the live encoder and shard) and answering,
  the median of three with an empty /tmp (everything from S3), of four with /tmp warm, and of three with the
  memory; then, as Lambda imports it, from the built serve layer in the runtime's Python (python3.13, when
  this machine has one), with and without the layer's bytecode;
- the installed size of what the ask Lambda's layer carries;
- the embedded default as `make run` starts it (scripts/bench_up.py): /ask quiet, during a burst of votes,
  right after it, and during a tune run (`--only-up` runs only these rows).

The 20k-chunk corpus is the demo corpus (real man-page chunks, really embedded) grown to 20k points with
synthetic neighbours (each a real chunk's vector plus noise, re-normalised, with that chunk's text): search
cost depends on the number and dimension of the vectors, and every query is really encoded."""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "layers" / "serve" / "python"), str(REPO), str(REPO / "scripts")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bench_stack  # noqa: E402
import bench_up  # noqa: E402

from rag_autotune.chunking import chunk_document, embed_text  # noqa: E402
from rag_autotune.corpus import load_documents  # noqa: E402
from rag_autotune.domain import RETRIEVAL_MODES, Chunk, Citation, IndexStats, QueryLog, VersionPair  # noqa: E402
from rag_autotune.feedback import record_feedback  # noqa: E402
from rag_autotune.local import stack  # noqa: E402
from rag_autotune.memory import MemoryParams, MemoryVote, VoteMemory, dump_snapshot, memory_key  # noqa: E402
from rag_autotune.runtime import Runtime  # noqa: E402
from rag_autotune.settings import get_settings  # noqa: E402
from rag_autotune.versions import read_stats, swap, write_stats  # noqa: E402


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def build_corpus(rt: Runtime, target: int, seed: int = 0) -> tuple[str, list[str]]:
    docs, _ = load_documents(REPO / "demo" / "corpus.jsonl")
    chunks = [c for d in docs for c in chunk_document(d, rt.settings.chunk_chars, rt.settings.chunk_overlap)]
    from rag_autotune.training.bootstrap import bootstrap

    bootstrap(rt.store, rt.settings.cache_dir)
    encoder = rt.load_bulk_encoder("v0")
    t = time.perf_counter()
    base = encoder.encode([embed_text(c) for c in chunks])
    print(f"embedded {len(chunks)} real chunks in {time.perf_counter() - t:.1f} s", flush=True)
    rng = np.random.default_rng(seed)

    def batches():  # type: ignore[no-untyped-def]
        yield chunks, base
        made = len(chunks)
        while made < target:
            n = min(2000, target - made)
            idx = rng.integers(0, len(chunks), n)
            vecs = base[idx] + rng.normal(0, 0.35 / np.sqrt(base.shape[1]) * 4, (n, base.shape[1]))
            vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
            syn = [
                Chunk(f"syn{made + i}#0", f"syn{made + i}", chunks[j].title, chunks[j].text) for i, j in enumerate(idx)
            ]
            made += n
            yield syn, vecs

    version = "v0-c1"
    t = time.perf_counter()
    n = rt.index.build(version, encoder.dim, batches())
    print(f"built index {version}: {n} points in {time.perf_counter() - t:.1f} s", flush=True)
    write_stats(rt.store, version, IndexStats(len(docs), n))
    swap(rt.store, VersionPair("v0", version), expected_etag=None, reason="bench", documents=len(docs), chunks=n)
    return version, golden_queries()


def golden_queries() -> list[str]:
    return [json.loads(x)["query"] for x in (REPO / "demo" / "golden.jsonl").read_text().splitlines()]


def remember(rt: Runtime, queries: list[str], n: int, seed: int = 1) -> None:
    """Ship a v0 memory of n votes on n distinct queries: the real queries' vectors plus noise, so that some are
    near what the bench asks (boosts are computed) and all are scored (one similarity per remembered query)."""
    base = rt.load_encoder("v0").encode(queries)
    rng = np.random.default_rng(seed)
    now = time.time()
    mem = VoteMemory("v0", base.shape[1], MemoryParams.from_settings(rt.settings), now)
    for i in range(n):
        v = base[i % len(base)] + rng.normal(0, 0.02, base.shape[1]).astype(np.float32)
        mem.add(MemoryVote(f"remembered question {i}", f"doc-{i % 500}", f"user-{i}", bool(i % 2), now), v)
    rt.store.put_bytes(memory_key("v0"), dump_snapshot(mem, as_of=now))


def trickle_votes(every_s: float) -> None:
    """`--trickle`: new votes until killed, written as other API instances would (/ask's signed query id, then
    the vote).
    Its own process, so that the writing does not compete with moto's server (in the bench process) for the
    GIL; prints how many it recorded when stopped."""
    rt = Runtime(get_settings())
    queries = golden_queries()
    pair = VersionPair("v0", "v0-c1")
    recorded = 0
    signal.signal(signal.SIGTERM, lambda *_: (print(recorded, flush=True), sys.exit(0)))
    for i in itertools.count():
        time.sleep(every_s)
        qid, j = uuid.uuid4().hex, i % len(queries)
        cited = (Citation(f"doc-{i % 97}", f"doc-{i % 97}#0", "t", "", 0.5, 1),)
        shown = rt.query_tokens.issue(QueryLog(qid, queries[j], pair, cited, time.time(), "bench"))
        recorded += record_feedback(
            rt.feedback,
            rt.query_tokens,
            query_id=shown,
            doc_id=cited[0].doc_id,
            vote="up",
            user_id=f"trickle-{i}",
            client_id="bench",
            comment=None,
            window_s=60,
        )


def serve_and_bench(
    env: dict[str, str], queries: list[str], n: int, log: Path, modes: Counter[str] | None = None
) -> list[float]:
    """Start `rag-autotune serve` (one request at a time, like one Lambda instance) and time n /ask calls."""
    port = stack.free_port()
    server = bench_stack.serve(port, Path(env["RAG_CACHE_DIR"]), log, **env)
    try:
        bench_stack.wait_serving([server], [log])
        return bench_http(port, queries, n, modes)
    finally:
        bench_stack.stop_servers([server])


def bench_http(port: int, queries: list[str], n: int, modes: Counter[str] | None = None) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    samples = []
    for i in range(n + 50):
        body = json.dumps({"query": queries[i % len(queries)], "top_k": 5})
        t = time.perf_counter()
        conn.request("POST", "/ask", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"/ask answered {resp.status}")
        if modes is not None and i >= 50:
            modes[json.loads(raw)["retrieval_mode"]] += 1
        if i >= 50:  # the first 50 warm caches and connections
            samples.append((time.perf_counter() - t) * 1000)
    return samples


def event(query: str) -> dict[str, object]:
    e = json.loads((REPO / "tests" / "events" / "ask.json").read_text())
    e["body"] = json.dumps({"query": query, "top_k": 5})
    return e


def bench_in_process(queries: list[str], n: int) -> list[float]:
    from rag_autotune.local.server import load_api_module

    app = load_api_module().app
    samples = []
    for i in range(n + 50):
        e = event(queries[i % len(queries)])
        t = time.perf_counter()
        resp = app(e, None)
        if i >= 50:
            samples.append((time.perf_counter() - t) * 1000)
        assert resp["statusCode"] == 200
    return samples


COLD_TAIL = """
t1 = time.perf_counter()
resp = app(json.loads(sys.argv[1]), None)
t2 = time.perf_counter()
assert resp["statusCode"] == 200, resp
print(json.dumps({"init_s": t1 - t0, "first_s": t2 - t1,
                  "torch": any(m.split('.')[0] == 'torch' for m in sys.modules)}), flush=True)
"""
# A fresh process of this venv importing the API module from the repo.
COLD = (
    """
import json, sys, time
t0 = time.perf_counter()
from rag_autotune.local.server import load_api_module
app = load_api_module().app
"""
    + COLD_TAIL
)
# As Lambda imports it: the runtime's Python with nothing but the built layer and boto3/chalice on its path.
COLD_LAYER = (
    """
import json, sys, time
t0 = time.perf_counter()
sys.path[:0] = [sys.argv[2], sys.argv[3]]
import importlib.util
spec = importlib.util.spec_from_file_location("app", sys.argv[4])
module = importlib.util.module_from_spec(spec)
sys.modules["app"] = module
spec.loader.exec_module(module)
app = module.app
"""
    + COLD_TAIL
)


def bench_cold(
    env: dict[str, str], query: str, runs: int = 5, command: tuple[list[str], list[str]] | None = None
) -> list[dict[str, float]]:
    """Fresh processes answering their first /ask: import + init and the first answer (timed inside), the
    spawn-to-answer time (until the answer's line is read: what a caller waits for) and the whole process
    (with the interpreter's exit, which a Lambda instance does not pay before it answers). `command`: the
    interpreter and script, and the arguments after the event (default: this venv, COLD)."""
    out = []
    script, extra = command or ([sys.executable, "-c", COLD], [])
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.Popen(
            [*script, json.dumps(event(query)), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one pipe, read as it comes: a full second pipe could block the child
            text=True,
        )
        assert p.stdout is not None
        r: dict[str, float] = {}
        seen: list[str] = []
        for line in p.stdout:  # the API's own log lines come first
            seen.append(line)
            if line.startswith('{"init_s"'):
                r = json.loads(line)
                r["answer_s"] = time.perf_counter() - t
                break
        rest, _ = p.communicate(timeout=120)
        r["wall_s"] = time.perf_counter() - t
        if p.returncode or "init_s" not in r:
            raise RuntimeError(("".join(seen) + rest)[-2000:])
        out.append(r)
    return out


def lambda_runtime(python: str, where: Path) -> Path:
    """boto3/chalice in `where`, compiled by `python` as the Lambda runtime's own packages are."""
    import build_layer

    runtime = build_layer.runtime_dir(where)
    subprocess.run(
        [python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(runtime)], check=True
    )
    return runtime


def layer_cold_command(layer: Path, python: str, runtime: Path) -> tuple[list[str], list[str]]:
    """The command of a cold start from the built layer with `runtime` beside it (-I -S: no site-packages, no
    PYTHON* variables; -B: nothing written)."""
    return [python, "-I", "-S", "-B", "-c", COLD_LAYER], [str(layer), str(runtime), str(REPO / "functions/api/app.py")]


def cold_row(name: str, runs: list[dict[str, float]]) -> str:
    """One table row: the medians of the cold starts measured."""
    init, first, answer, wall = (
        float(np.median([r[k] for r in runs])) for k in ("init_s", "first_s", "answer_s", "wall_s")
    )
    return (
        f"| cold start, {name}: import+init / first answer / spawn to answer / whole process (medians) | "
        f"{init:.2f} s / {first * 1000:.1f} ms / {answer:.2f} s / {wall:.2f} s | | {len(runs)} |"
    )


def print_modes(chunks: int, rows: list[tuple[str, list[float], Counter[str]]], header: bool = True) -> None:
    if header:
        print(f"\n## Query path by retrieval mode (this machine: {os.cpu_count() or 0} cores)\n")
        print("| measure | p50 | p99 | n |\n|---|---|---|---|")
    for mode, ms, answered in rows:
        said = ", ".join(f"{m} {k}" for m, k in answered.most_common())
        print(
            f"| HTTP POST /ask, {chunks} chunks, top_k 5, version mode {mode} (answered: {said}) "
            f"| {pct(ms, 50):.2f} ms | {pct(ms, 99):.2f} ms | {len(ms)} |"
        )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--memory-votes", type=int, default=10_000, help="votes in the feedback memory's snapshot")
    ap.add_argument("--trickle-every", type=float, default=0.2, help="seconds between new votes in the memory row")
    ap.add_argument("--trickle", type=float, help=argparse.SUPPRESS)  # the vote writer's own process
    ap.add_argument("--modes-only", action="store_true", help="only the dense vs hybrid /ask rows")
    ap.add_argument("--only-up", action="store_true", help="only the rows of the embedded default (bench_up.py)")
    ap.add_argument("--votes", type=int, default=3000, help="votes in the burst of the embedded default's rows")
    args = ap.parse_args()
    if args.trickle is not None:
        trickle_votes(args.trickle)  # until SIGTERM
    if args.only_up:
        bench_up.print_rows(bench_up.run_rows(Path(f"/tmp/rag-bench-up-{os.getpid()}"), args.requests, args.votes))
        return 0

    suffix = uuid.uuid4().hex[:6]
    bench = bench_stack.start("bench", Path(f"/tmp/rag-bench-{suffix}"), POWERTOOLS_METRICS_DISABLED="false")
    rt = bench.rt
    version, queries = build_corpus(rt, args.chunks)

    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'layers' / 'serve' / 'python'}:{REPO}",
        "RAG_CACHE_DIR": f"/tmp/rag-bench-{suffix}-api",
    }
    mode_rows = []
    stats = read_stats(rt.store, version)
    for mode in RETRIEVAL_MODES:
        write_stats(rt.store, version, replace(stats, mode=mode, mode_reason="bench"))
        answered: Counter[str] = Counter()
        ms = serve_and_bench(env, queries, args.requests, Path(f"/tmp/rag-bench-{suffix}-{mode}.log"), answered)
        mode_rows.append((mode, ms, answered))
    write_stats(rt.store, version, stats)
    if args.modes_only:
        bench.stop()
        print_modes(args.chunks, mode_rows)
        return 0
    http_ms = serve_and_bench(env, queries, args.requests, Path(f"/tmp/rag-bench-{suffix}-api.log"))
    inproc_ms = bench_in_process(queries, args.requests)
    # Each empty-/tmp start gets a cache folder of its own: the model and the shard come from S3 every time.
    empty = [bench_cold({**env, "RAG_CACHE_DIR": f"/tmp/rag-cold-{suffix}-{i}"}, queries[0], 1)[0] for i in range(3)]
    warm = bench_cold(env, queries[0], 4)  # these find the model and shard already in /tmp, as a warm /tmp
    import build_layer

    python = build_layer.runtime_python()
    layer = build_layer.build(REPO / "build" / "layer", bytecode=False)  # compiled below, once copied without
    layer_rows: list[tuple[str, list[dict[str, float]]]] = []
    if python is not None:  # as Lambda starts: the built layer, with and without its bytecode, /tmp empty
        bare = Path(f"/tmp/rag-bench-{suffix}-bare-layer/python")
        shutil.copytree(layer, bare)  # the same build before its bytecode: one wheel install, not two
        build_layer.compile_serving(layer, python)
        runtime = lambda_runtime(python, Path(f"/tmp/rag-bench-{suffix}-runtime"))
        for n, (name, built) in enumerate((("the built layer", layer), ("the layer without bytecode", bare))):
            command = layer_cold_command(built, python, runtime)
            caches = [f"/tmp/rag-cold-{suffix}-layer{n}-{i}" for i in range(3)]
            runs = [bench_cold({**env, "RAG_CACHE_DIR": cache}, queries[0], 1, command)[0] for cache in caches]
            layer_rows.append((f"empty /tmp, {name} in {Path(python).name} -I -S (as Lambda imports it)", runs))

    remember(rt, queries, args.memory_votes)  # from here on, v0 serves with a feedback memory
    memory_rows: list[tuple[str, list[float]]] = []
    for name, trickling, extra in (
        (f"memory of {args.memory_votes} votes", False, {}),
        (f"memory of {args.memory_votes} votes, new votes arriving", True, {}),
        ("memory off, new votes arriving (control)", True, {"RAG_MEMORY_ENABLED": "false"}),
    ):
        trickle = (
            subprocess.Popen(
                [sys.executable, __file__, "--trickle", str(args.trickle_every)],
                env={**env, "RAG_CACHE_DIR": f"/tmp/rag-bench-{suffix}-trickle"},
                stdout=subprocess.PIPE,
                text=True,
            )
            if trickling
            else None
        )
        ms = serve_and_bench({**env, **extra}, queries, args.requests, Path(f"/tmp/rag-bench-{suffix}-memory.log"))
        if trickle is not None:
            trickle.terminate()
            name += f" ({trickle.communicate(timeout=30)[0].split()[-1]} written meanwhile)"
        memory_rows.append((name, ms))
    cold_memory = bench_cold(env, queries[0], 3)

    layer_mb = build_layer.size(layer) / 1e6
    parts = sorted(
        ((build_layer.size(p) if p.is_dir() else p.stat().st_size, p.name) for p in layer.iterdir()), reverse=True
    )
    bench.stop()

    print(f"\n## Query path benchmark (this machine: {os.cpu_count() or 0} cores)\n")
    print("| measure | p50 | p99 | n |\n|---|---|---|---|")
    print(
        f"| HTTP POST /ask, {args.chunks} chunks, top_k 5 | {pct(http_ms, 50):.2f} ms | {pct(http_ms, 99):.2f} ms "
        f"| {len(http_ms)} |"
    )
    print(
        f"| in-process handler (API Gateway event → response) | {pct(inproc_ms, 50):.2f} ms | "
        f"{pct(inproc_ms, 99):.2f} ms | {len(inproc_ms)} |"
    )
    print_modes(args.chunks, mode_rows, header=False)
    for name, ms in memory_rows:
        print(f"| HTTP POST /ask, same, {name} | {pct(ms, 50):.2f} ms | {pct(ms, 99):.2f} ms | {len(ms)} |")
    print(cold_row("empty /tmp", empty))
    print(cold_row("artifacts in /tmp", warm))
    print(cold_row(f"artifacts in /tmp, memory of {args.memory_votes} votes", cold_memory))
    for name, runs in layer_rows:
        print(cold_row(name, runs))
    if python is None:
        print(f"| cold start from the built layer | not measured: no {build_layer.RUNTIME} here | | |")
    print(f"| torch imported by the serving process | {any(c['torch'] for c in empty + warm + cold_memory)} | | |")
    print(f"\nServe layer (`make layer`: what the ask Lambda carries besides the runtime's boto3): {layer_mb:.1f} MB")
    for part_size, name in parts[:6]:
        print(f"  {name:<28} {part_size / 1e6:7.1f} MB")
    import sam_build

    why_not = sam_build.unavailable_reason()
    if why_not is None:
        built = sam_build.build(REPO / "build" / "sam")
        print("\n`sam build ApiFunction` (template.yaml; Lambda's limit is 250 MB unzipped, function + layers):")
        for name, n in built.items():
            print(f"  {name:<28} {n / 1e6:7.1f} MB")
        print(f"  {'total':<28} {sum(built.values()) / 1e6:7.1f} MB")
    else:
        print(f"\n(no sam build sizes: {why_not})")
    bench_up.print_rows(bench_up.run_rows(Path(f"/tmp/rag-bench-up-{suffix}"), args.requests, args.votes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
