"""`make bench-night`: one whole nightly run through the real ASL at a large vote volume, with the default
settings (issue 13: a run with 10× the 3,125 votes that once timed out must end on its merits).

Man pages of sections 2/3/5/7 (scripts/man_corpus.py) are ingested into the embedded default (moto as AWS).
--votes simulated votes go into the feedback table as /feedback records them (bench_train_budget's users:
👍 on the first relevant page's first chunk, 👎 on four others, five a question, questions asked again under
new ids until the volume). Then `rag-autotune tune --wait` runs the state machine as the nightly rule would,
every setting at its default: the train step's budget comes from the train function's timeout in
template.yaml. Prints the run's status and reasons, the triplets used and left, and each step's seconds from
the run record. CPU-heavy: the train step uses its whole budget when the votes give more than fits."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "layers" / "serve" / "python"), str(REPO), str(REPO / "scripts")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bench_stack  # noqa: E402
import bench_train_budget  # noqa: E402
import man_corpus  # noqa: E402

from rag_autotune import cli  # noqa: E402
from rag_autotune.domain import Vote, voter_id  # noqa: E402
from rag_autotune.feedback import dedupe_key  # noqa: E402
from rag_autotune.local import sfn  # noqa: E402
from rag_autotune.tune.runs import list_runs  # noqa: E402
from rag_autotune.versions import read_manifest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--votes", type=int, default=31_250, help="simulated votes (10× the issue's 3,125)")
    ap.add_argument("--docs", type=int, default=2000, help="at most this many man pages")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    started = time.perf_counter()
    docs, queries = man_corpus.build(["2", "3", "5", "7"], args.docs, args.seed)
    work = Path(tempfile.mkdtemp(prefix="rag-bench-night-"))
    corpus = work / "corpus.jsonl"
    man_corpus.write_jsonl(corpus, docs)
    bench = bench_stack.start("night", work / "cache")
    rt = bench.rt
    try:
        report = bench_stack.bootstrap_and_ingest(bench, corpus)
        found = read_manifest(rt.store)
        assert found
        live = found[0].live
        # Each page's first chunk ("<doc_id>#0") is the one its users were shown.
        shown = {c.doc_id: c.chunk_id for c in rt.index.chunks(live.index_version) if c.chunk_id.endswith("#0")}
        votes = bench_train_budget.simulated_votes(queries, shown, args.votes, args.seed)
        day, every = time.time() - 86_400, 86_000 / len(votes)  # over the last day, in order, for the live pair
        votes = [dataclasses.replace(v, pair=live, created_at=day + i * every) for i, v in enumerate(votes)]

        def record(v: Vote) -> bool:  # keyed as /feedback keys a vote
            return rt.feedback.record_vote(
                v, dedupe_key(voter_id(v.user_id, v.client_id), v.query_id, v.doc_id, v.vote), 0
            )

        t = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            recorded = sum(pool.map(record, votes))
        print(f"votes: {recorded} recorded of {len(votes)} ({time.perf_counter() - t:.0f} s)", flush=True)

        sfn.deploy(bench.settings)
        t = time.perf_counter()
        code = cli.main(["tune", "--wait", "--timeout", "3600"])
        wall = time.perf_counter() - t
        run = list_runs(rt.store, 1)[0]
    finally:
        bench.stop()

    training = run.get("training") or {}
    print(
        f"\n## One nightly run at {recorded} votes, default settings ({time.perf_counter() - started:.0f} s in all)\n"
    )
    print(f"- corpus: {len(docs)} pages, {report.chunks} chunks")
    print(f"- run: {run['status']}, exit {code}, {wall:.0f} s from start to end")
    print(f"- reasons: {'; '.join(run.get('reasons') or []) or 'none'}")
    print(f"- counts: {json.dumps(run.get('counts'))}")
    print(
        f"- training: {training.get('steps')} steps at {training.get('seconds_per_step')} s, triplets used "
        f"{training.get('triplets_used')}, left {training.get('triplets_left')}, {training.get('seconds')} s"
    )
    print("\n| step | seconds |\n|---|---|")
    for step, s in (run.get("steps") or {}).items():
        print(f"| {step} | {s['seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
