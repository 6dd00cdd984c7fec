"""`make bench-load`: load during a swap, on loopback, bounded in time (not part of make test).

1. The embedded default: moto as AWS, the stack from template.yaml, bootstrap, the demo corpus ingested.
2. API server processes (`rag-autotune serve`, one per core by default: each is one "Lambda instance" that takes
   one request at a time); clients are spread over them.
3. --clients client threads (in worker processes of their own, so that they do not compete with moto for this
   process's GIL), each looping: POST /ask, then every other time POST /feedback on one of the cited documents.
   --start-after seconds in, a real tune run starts (a small LoRA run, gate margin -1 so that it swaps). The load
   lasts --seconds, and at least until --tail seconds after the swap, so the swap lands inside it.
4. Prints requests/s, p50/p99 per route and per phase (before / after the swap), errors (goal 0), votes
   accepted (201) vs vote rows in DynamoDB (goal: equal), and answers from a mixed pair (an encoder version
   that is not the index's: goal 0).

On AWS the tune steps run on their own Lambdas. Here they share the same 2 cores with the API processes, so
latency while the run trains and embeds is far above the quiet figures of `make bench-query`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "layers" / "serve" / "python"), str(REPO)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bench_stack  # noqa: E402

from rag_autotune.ingest import ingest  # noqa: E402
from rag_autotune.local import sfn  # noqa: E402
from rag_autotune.local.stack import free_port  # noqa: E402
from rag_autotune.versions import read_manifest  # noqa: E402

QUERIES = [json.loads(x)["query"] for x in (REPO / "demo" / "golden.jsonl").read_text().splitlines()]
TINY_TUNE = {  # the swap is the point here, not the model: a small LoRA run that always passes the gate
    "RAG_TUNE_TRAIN_OVERRIDES": json.dumps({"rank": 4, "epochs": 1, "max_seq_len": 64, "batch_size": 16}),
    "RAG_TUNE_MARGIN": "-1",
    "RAG_TUNE_P99_BUDGET_MS": "1000",
    "RAG_TUNE_MIN_FEEDBACK": "20",
}


def consistent(body: dict[str, Any]) -> bool:
    """An answer names its encoder and its index; index vN-cK belongs to encoder vN."""
    return str(body["index_version"]).startswith(f"{body['model_version']}-c")


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: list[tuple[float, str, int, float]] = []  # (wall time, route, status, ms)
        self.errors: list[str] = []
        self.pairs: Counter[str] = Counter()
        self.mixed = 0


def post(
    conn: http.client.HTTPConnection, path: str, body: dict[str, object], tally: Tally
) -> tuple[int, dict[str, Any]]:
    t = time.perf_counter()
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read() or b"{}")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        conn.close()  # http.client reconnects on the next request
        with tally.lock:
            tally.errors.append(f"{path}: {type(exc).__name__}: {exc}")
        return 0, {}
    with tally.lock:
        tally.samples.append((time.time(), path, resp.status, (time.perf_counter() - t) * 1000))
        if resp.status >= 500:
            tally.errors.append(f"{path}: {resp.status} {data}")
    return resp.status, data


def client(ports: list[int], seed: int, stop: Any, tally: Tally) -> None:
    rng = random.Random(seed)
    conns = {p: http.client.HTTPConnection("127.0.0.1", p, timeout=120) for p in ports}
    i = 0
    while not stop.is_set():
        conn = conns[ports[(seed + i) % len(ports)]]
        i += 1
        status, body = post(conn, "/ask", {"query": rng.choice(QUERIES), "top_k": 5}, tally)
        if status != 200:
            continue
        with tally.lock:
            tally.pairs[f"{body['model_version']}/{body['index_version']}"] += 1
            tally.mixed += not consistent(body)
        cites: list[dict[str, Any]] = body.get("citations") or []
        if cites and i % 2 == 0:
            cited = rng.choice(cites)
            vote = "up" if rng.random() < 0.5 else "down"
            post(conn, "/feedback", {"query_id": body["query_id"], "doc_id": cited["doc_id"], "vote": vote}, tally)


def worker(ports: list[int], seeds: list[int], stop: Any, out: Any) -> None:
    """One client process: a thread per client; sends its tally back when stop is set."""
    tally = Tally()
    threads = [threading.Thread(target=client, args=(ports, s, stop, tally), daemon=True) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((tally.samples, tally.errors, dict(tally.pairs), tally.mixed))


def table(rows: list[tuple[float, str, int, float]], elapsed: float, label: str) -> None:
    for path in sorted({r[1] for r in rows}):
        ms = [r[3] for r in rows if r[1] == path]
        statuses = Counter(r[2] for r in rows if r[1] == path)
        print(
            f"| {label} | {path} | {len(ms)} | {len(ms) / max(elapsed, 1e-9):.1f} | {np.percentile(ms, 50):.0f} ms | "
            f"{np.percentile(ms, 99):.0f} ms | {', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))} |"
        )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--servers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--workers", type=int, default=2, help="client processes")
    ap.add_argument("--start-after", type=float, default=10, help="start the tune run this long into the load")
    ap.add_argument("--tail", type=float, default=30, help="keep the load on this long after the swap")
    ap.add_argument("--window", type=float, default=60, help="also report this many seconds centred on the swap")
    ap.add_argument("--tune-timeout", type=float, default=900)
    args = ap.parse_args()

    work = Path(f"/tmp/rag-bench-load-{uuid.uuid4().hex[:6]}")
    bench = bench_stack.start(
        "load",
        work / "cache",
        deploy_template=True,
        RAG_MANIFEST_TTL_S="1",
        RAG_FEEDBACK_RATE_PER_S="0",  # every simulated client is 127.0.0.1
        **TINY_TUNE,
    )
    settings, rt = bench.settings, bench.rt
    from rag_autotune.training.bootstrap import bootstrap

    bootstrap(rt.store, settings.cache_dir)
    report = ingest(REPO / "demo" / "corpus.jsonl", store=rt.store, index=rt.index, load_encoder=rt.load_bulk_encoder)
    print(f"corpus: {report.documents} documents, {report.chunks} chunks", flush=True)

    ports = [free_port() for _ in range(args.servers)]
    logs = [work / f"serve-{p}.log" for p in ports]
    servers = [bench_stack.serve(p, work / f"serve-{p}", log) for p, log in zip(ports, logs, strict=True)]
    bench_stack.wait_serving(servers, logs)  # each instance has its own /tmp
    before = read_manifest(rt.store)[0].live  # type: ignore[index]

    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    per = [list(range(args.clients))[k :: args.workers] for k in range(args.workers)]
    workers = [ctx.Process(target=worker, args=(ports, seeds, stop, out), daemon=True) for seeds in per]
    t0 = time.time()
    for w in workers:
        w.start()
    arn = sfn.deploy(settings)
    time.sleep(args.start_after)  # the run needs RAG_TUNE_MIN_FEEDBACK new votes: the load makes them
    execution = sfn.start(arn)
    swapped: list[float] = []

    def watch() -> None:
        result = sfn.wait(execution, timeout_s=args.tune_timeout, poll_s=0.5)
        swapped.append(time.time())
        print(f"tune run {result['status']} at {swapped[0] - t0:.0f} s", flush=True)

    threading.Thread(target=watch, daemon=True).start()
    while time.time() - t0 < args.seconds or (not swapped and time.time() - t0 < args.tune_timeout):
        time.sleep(0.5)
    if swapped:
        time.sleep(max(0.0, swapped[0] + args.tail - time.time()))
    stop.set()
    samples: list[tuple[float, str, int, float]] = []
    errors: list[str] = []
    pairs: Counter[str] = Counter()
    mixed = 0
    for _ in workers:
        s_, e_, p_, m_ = out.get(timeout=300)
        samples += s_
        errors += e_
        pairs.update(p_)
        mixed += m_
    t_end = time.time()
    after = read_manifest(rt.store)[0].live  # type: ignore[index]
    rows = len(rt.feedback.votes(None, 10**9))
    bench_stack.stop_servers(servers)
    bench.stop()

    elapsed = t_end - t0
    accepted = sum(1 for r in samples if r[1] == "/feedback" and r[2] == 201)
    swap_at = swapped[0] if swapped else t_end
    print(f"\n## Load during a swap: {args.clients} clients, {elapsed:.0f} s, {args.servers} API processes\n")
    print(f"live pair {before.as_dict()} → {after.as_dict()}; the tune run ended {swap_at - t0:.0f} s in")
    print("| phase | route | requests | req/s | p50 | p99 | statuses |\n|---|---|---|---|---|---|---|")
    half = args.window / 2  # the view: a window of --window seconds with the swap in its middle
    lo, hi = max(t0, swap_at - half), min(t_end, swap_at + half)
    table(samples, elapsed, "whole run")
    table([r for r in samples if r[0] < swap_at], swap_at - t0, "tune running")
    table([r for r in samples if r[0] >= swap_at], t_end - swap_at, "after the swap")
    table([r for r in samples if lo <= r[0] < hi], hi - lo, f"{hi - lo:.0f} s around the swap")
    in_window = [r for r in samples if lo <= r[0] < hi]
    print(f"\n{hi - lo:.0f} s around the swap: {len(in_window)} requests, {len(in_window) / (hi - lo):.1f} req/s")
    print(f"\nall requests: {len(samples)} in {elapsed:.0f} s = {len(samples) / elapsed:.1f} req/s")
    print(f"errors (5xx or connection): {len(errors)}" + "".join(f"\n  {e}" for e in errors[:5]))
    print(f"votes accepted (201): {accepted}; vote rows in DynamoDB: {rows}; lost: {accepted - rows}")
    print(f"answers from a mixed pair: {mixed} of {sum(pairs.values())}")
    print("answers per pair: " + ", ".join(f"{k}: {v}" for k, v in sorted(pairs.items())))
    return 0 if not errors and accepted == rows and mixed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
