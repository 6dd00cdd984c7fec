"""`make bench-ablation`: what each component adds, on one simulated night (issue 14).

For --corpus man (the development benchmark: man pages of sections 2/3/5/7) or family (near-duplicate
families of sections 2/3, several relevant pages per question), as `make bench-loop` builds them:

1. the embedded default (moto as AWS), bootstrap, ingest, the API over HTTP (feedback memory on, steering off:
   the defaults);
2. simulated users on the voted half ask over HTTP and vote on the top 5 (bench_loop.vote_round);
3. one tune run through the real ASL with the gate margin at -1, so the trained candidate goes live and can be
   measured whatever the gate would say;
4. without retraining, each row below answered by retrieve() (what /ask runs) from a LivePair built for it:
   the base or the tuned pair, dense or hybrid, with or without the feedback memory, with or without vote
   steering. The memory is opened as the API opens it (open_live_memory: the base model's from the vote log
   with the settings' values, the tuned model's from the snapshot its smoke step shipped).

Steering needs fitted params: every steered row uses the ones this night's smoke step fitted (for the tuned
encoder, in its retrieval mode), switched on whatever the fit decided, and the bench prints them. The hybrid
rows use the mode smoke chose for the tuned index when it chose a hybrid one, else the first version's
(domain.FIRST_MODE). "before training, as served" is what /ask served minutes after the votes: the base pair in
the mode its ingest gave it, with the memory the API opened.

Prints one markdown table: repeated (voted) and held-out nDCG@10, hit@5, P@5 per row, with what each
component does by default and whether it raised held-out nDCG@10 over the base row."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "layers" / "serve" / "python"), str(REPO), str(REPO / "scripts")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bench_loop  # noqa: E402
import bench_stack  # noqa: E402

from rag_autotune import cli  # noqa: E402
from rag_autotune.domain import FIRST_MODE, RetrievalMode  # noqa: E402
from rag_autotune.live import LivePair  # noqa: E402
from rag_autotune.local import sfn  # noqa: E402
from rag_autotune.local.server import ApiServer, load_api_module  # noqa: E402
from rag_autotune.memory import LiveMemory, MemoryParams, open_live_memory, read_snapshot  # noqa: E402
from rag_autotune.runtime import Runtime  # noqa: E402
from rag_autotune.settings import Settings  # noqa: E402
from rag_autotune.steering import SteerParams  # noqa: E402
from rag_autotune.tune.runs import list_runs  # noqa: E402
from rag_autotune.versions import read_manifest, stored_mode  # noqa: E402

FROZEN_S = 1e9  # the rows' memories never refresh while measured: every row sees the same votes


@dataclass(frozen=True)
class Row:
    name: str
    tuned: bool = False
    hybrid: bool = False
    memory: bool = False
    steering: bool = False
    shipped: bool = False  # what /ask serves after the night: the swapped pair, opened as the API opens it
    before_training: bool = False  # what /ask served minutes after the votes: the base pair in its first mode


ROWS = (
    Row("base"),
    Row("+memory", memory=True),
    Row("+LoRA", tuned=True),
    Row("+hybrid", hybrid=True),
    Row("+relevance feedback", steering=True),
    Row("all", tuned=True, hybrid=True, memory=True, steering=True),
    Row("before training, as served", before_training=True),
    Row("as shipped", shipped=True),
)


def default_of(row: Row, hybrid_mode: str, smoke_mode: str) -> str:
    """What the product does with the row's component when nothing is set (Settings' field defaults)."""
    field = {k: f.default for k, f in Settings.model_fields.items()}
    if row.memory and not row.tuned:
        return "on" if field["memory_enabled"] else "off"
    if row.tuned and not row.hybrid:
        return "on: nightly, the gate decides the swap"
    if row.hybrid and not row.tuned:
        first = f"on from the first version ({FIRST_MODE})"
        return f"{first}, then smoke chooses (this night: {smoke_mode}); row: {hybrid_mode}"
    if row.steering and not row.tuned:
        return "on" if field["steering_enabled"] else "off (RAG_STEERING_ENABLED)"
    if row.before_training:
        return f"the defaults before any run: the base model in its first version's mode ({FIRST_MODE}), memory on"
    if row.shipped:
        return f"the defaults: the swapped model in smoke's mode ({smoke_mode}), memory and steering as shipped"
    return "—"


def row_memory(rt: Runtime, settings: Settings, live: LivePair, row: Row, steer: SteerParams) -> LiveMemory | None:
    """The memory as the API opens it (Runtime.load_memory's arguments), frozen, with the row's switches."""
    if not (row.memory or row.steering):
        return None
    mem = open_live_memory(
        rt.store,
        rt.feedback,
        live.encoder,
        MemoryParams.from_settings(settings),
        refresh_s=FROZEN_S,
        depth=settings.memory_depth,
        max_votes=settings.memory_max_votes,
        max_age_days=settings.memory_max_age_days,
        background=False,
        chunk_vectors=rt.index.chunk_vectors,
        steering=row.steering,
    )
    mem.memory.params = replace(mem.memory.params, enabled=row.memory)
    mem.memory.steering = replace(steer, enabled=row.steering)
    mem.serve_from(live.pair.index_version)  # the voted chunks' vectors steering needs, from this index version
    return mem


def row_pair(
    rt: Runtime,
    settings: Settings,
    pairs: dict[bool, LivePair],
    row: Row,
    mode: RetrievalMode,
    steer: SteerParams,
) -> LivePair:
    if row.shipped or row.before_training:  # Runtime.load_memory: the settings and what a smoke step shipped
        live = pairs[row.shipped]
        shipped = rt.load_memory(live.encoder)
        if shipped is not None:
            shipped.serve_from(live.pair.index_version)
        return replace(live, mode=stored_mode(rt.store, live.pair.index_version)[0], memory=shipped)
    live = pairs[row.tuned]
    memory = row_memory(rt, settings, live, row, steer)
    return replace(live, mode=mode if row.hybrid else "dense", memory=memory)


def live_pair(rt: Runtime) -> LivePair:
    found = read_manifest(rt.store)
    assert found
    manifest, etag = found
    pair = manifest.live
    return LivePair(pair, rt.load_encoder(pair.model_version), rt.index, manifest, etag)


def main() -> int:
    args = bench_loop.corpus_arguments(argparse.ArgumentParser()).parse_args()

    started = time.perf_counter()
    docs, queries = bench_loop.load_corpus(args)
    bench, corpus = bench_loop.voting_stack("ablation", docs)
    settings, rt = bench.settings, bench.rt
    try:
        report = bench_stack.bootstrap_and_ingest(bench, corpus)
        api_module = load_api_module()
        api = ApiServer(api_module.app, port=0).start()
        voted, heldout = bench_loop.split(queries, args.seed)
        t = time.perf_counter()
        asked, votes = bench_loop.vote_round(bench_loop.Client(api.port), voted, args.votes)
        print(f"users: {asked} queries asked, {votes} votes ({time.perf_counter() - t:.0f} s)", flush=True)
        api.stop()
        sets = {"repeated": bench_loop.judged(voted[:asked]), "held-out": bench_loop.judged(heldout)}
        base = live_pair(rt)

        os.environ["RAG_TUNE_MARGIN"] = "-1"  # read by the step functions' processes: the candidate goes live
        sfn.deploy(settings)
        t = time.perf_counter()
        code = cli.main(["tune", "--wait", "--timeout", "3600"])
        run = list_runs(rt.store, 1)[0]
        print(f"tune run: exit {code}, {run['status']} ({time.perf_counter() - t:.0f} s)", flush=True)
        tuned = live_pair(rt)
        if tuned.pair.model_version == base.pair.model_version:
            raise SystemExit(f"the tune run did not swap ({run['status']}): no tuned model to measure")
        run_report = json.loads(rt.store.get_bytes(f"runs/{run['run_id']}/report.json"))

        smoke_mode, why = stored_mode(rt.store, tuned.pair.index_version)
        mode: RetrievalMode = smoke_mode if smoke_mode != "dense" else FIRST_MODE
        snapshot = read_snapshot(rt.store, tuned.pair.model_version, MemoryParams.from_settings(settings)).memory
        steer = snapshot.steering if snapshot is not None else SteerParams()
        memory_section = run_report.get("memory") or {}
        print(f"smoke's mode for the tuned index: {smoke_mode} ({why}); hybrid rows: {mode}")
        print(
            f"BM25 vectors: base index {rt.index.has_sparse(base.pair.index_version)}, "
            f"tuned index {rt.index.has_sparse(tuned.pair.index_version)}"
        )
        print(
            f"smoke's memory: {'enabled' if memory_section.get('enabled') else 'shipped disabled'}; "
            f"{'; '.join(memory_section.get('reasons', []))}"
        )
        fit = memory_section.get("steering") or {}
        print(
            f"steering fit: radius {steer.radius}, a {steer.a}, b {steer.b}, c {steer.c}, shipped "
            f"{'enabled' if steer.enabled else 'disabled'} ({'; '.join(fit.get('reasons', []))})",
            flush=True,
        )

        pairs = {False: base, True: tuned}
        results = []
        for row in ROWS:
            t = time.perf_counter()
            live = row_pair(rt, settings, pairs, row, mode, steer)
            q = bench_loop.pair_quality(lambda live=live: live, sets)  # type: ignore[misc]
            results.append((row, q))
            print(f"row: {bench_loop.row(row.name, q)} ({time.perf_counter() - t:.0f} s)", flush=True)
    finally:
        bench.stop()

    base_heldout = results[0][1]["held-out"]["ndcg@10"]
    print(
        f"\n## Ablation, {args.corpus}: {len(docs)} docs, {report.chunks} chunks, {votes} votes on {asked} queries; "
        f"repeated n={results[0][1]['repeated']['n']}, held-out n={results[0][1]['held-out']['n']} "
        f"({time.perf_counter() - started:.0f} s)\n"
    )
    ceiling = {name: sum(min(len(q.relevant), 5) / 5 for q in qs) / max(1, len(qs)) for name, qs in sets.items()}
    print(
        f"P@5 if every relevant page were in the top 5: repeated {ceiling['repeated']:.3f}, "
        f"held-out {ceiling['held-out']:.3f}\n"
    )
    print(
        "| row | repeated nDCG@10 | hit@5 | P@5 | held-out nDCG@10 | hit@5 | P@5 | default | held-out vs base |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for row, q in results:
        cells = " | ".join(
            f"{q[s]['ndcg@10']:.3f} | {q[s]['hit@5']:.3f} | {q[s]['p@5']:.3f}" for s in ("repeated", "held-out")
        )
        delta = round(q["held-out"]["ndcg@10"] - base_heldout, 3)  # as printed: +0.000 did not help
        verdict = "—" if row == ROWS[0] else f"{delta:+.3f} ({'helped' if delta > 0 else 'did not help'})"
        print(f"| {row.name} | {cells} | {default_of(row, mode, smoke_mode)} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
