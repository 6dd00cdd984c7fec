"""`make bench-loop`: one nightly run, measured, on a real corpus with known answers (not part of make test).

1. Man pages of sections 2/3/5/7 (scripts/man_corpus.py): each page a document; its NAME description is a
   query whose relevant documents are all pages sharing it. With --corpus family, the second development
   corpus (scripts/family_corpus.py): sections 2/3 in near-duplicate families, several relevant pages a question.
2. The embedded default: moto as AWS, bootstrap, ingest, the API over HTTP.
3. Simulated users on half of the queries ask over HTTP, see the top 5, and vote 👍 on relevant documents and
   👎 on the others, until --votes votes. The other half of the queries is never voted on (held-out).
4. One tune run: `rag-autotune tune --wait` through the real ASL in moto's Step Functions interpreter.
5. Prints P@5, hit@5, nDCG@10 before → after for repeated (voted) and held-out queries, the wall time of
   each step, the HTTP /ask p99 before and after, and the peak memory of the steps.
6. The feedback memory (issue 7; --no-memory skips it): the rows base, base + memory (seconds after the votes,
   as /ask serves them), tuned, tuned + memory, then a second round (the users re-ask, vote on what they now
   see) and the /ask p99 with 10k remembered votes. Each simulated user votes under their own user_id.
   --second-night then runs a second tune on both rounds' votes: the product's "within 48 hours".

With --force-swap the run's gate margin is -1, so the candidate goes live whatever the held-out feedback
says: the "after" columns then measure the trained candidate itself, and the script also prints what the
default gate (RAG_TUNE_MARGIN unset) decided on the same figures. Without it, "after" is whatever the
default gate let through (unchanged when it rejects)."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import resource
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "layers" / "serve" / "python"), str(REPO), str(REPO / "scripts")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bench_stack  # noqa: E402
import family_corpus  # noqa: E402
import man_corpus  # noqa: E402

from rag_autotune import cli  # noqa: E402
from rag_autotune.ask import retrieve  # noqa: E402
from rag_autotune.live import LivePair  # noqa: E402
from rag_autotune.local import sfn  # noqa: E402
from rag_autotune.local.server import ApiServer, load_api_module  # noqa: E402
from rag_autotune.memory import MemoryVote  # noqa: E402
from rag_autotune.runtime import Runtime  # noqa: E402
from rag_autotune.settings import Settings  # noqa: E402
from rag_autotune.tune.gate import GateInput, decide  # noqa: E402
from rag_autotune.tune.metrics import Judged, evaluate  # noqa: E402
from rag_autotune.tune.runs import list_runs  # noqa: E402
from rag_autotune.tune.steps import ranker  # noqa: E402
from rag_autotune.versions import read_manifest  # noqa: E402


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: dict[str, object]) -> tuple[int, dict[str, object], float]:
        t = time.perf_counter()
        self.conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = json.loads(resp.read())
        return resp.status, data, (time.perf_counter() - t) * 1000


def ask_p99(client: Client, queries: list[str], n: int = 300) -> float:
    return float(np.percentile([client.post("/ask", {"query": queries[i % len(queries)]})[2] for i in range(n)], 99))


def quality(rt: Runtime, sets: dict[str, list[Judged]]) -> dict[str, dict[str, float]]:
    found = read_manifest(rt.store)
    assert found
    pair = found[0].live
    rank = ranker(rt.load_encoder(pair.model_version), rt.index, pair.index_version)
    return {name: evaluate(rank, qs) for name, qs in sets.items()}


Quality = dict[str, dict[str, float]]


def served_quality(api_module: object, sets: dict[str, list[Judged]]) -> Quality:
    """What /ask serves: the top 10 per query from the API process's own live pair and feedback memory, through
    the same retrieve() /ask runs. In process rather than over HTTP, so that measuring does not log ~1k queries
    each time (moto copies every table on each vote's transaction: a big table makes voting slow and huge)."""
    return pair_quality(lambda: api_module.runtime.live.current(), sets)  # type: ignore[attr-defined]


def pair_quality(live: Callable[[], LivePair], sets: dict[str, list[Judged]]) -> Quality:
    """The top 10 per query as retrieve() (what /ask runs) answers from the pair `live` returns."""

    def rank(query: str) -> list[str]:
        return [c.doc_id for c in retrieve(query, 10, live()).citations]

    return {name: evaluate(rank, qs) for name, qs in sets.items()}


def corpus_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The corpus and vote options load_corpus and the vote round read (bench-loop's and bench-ablation's)."""
    ap.add_argument(
        "--corpus",
        choices=("man", "family"),
        default="man",
        help="man: sections 2/3/5/7; family: "
        "near-duplicate families of sections 2/3, several relevant pages per question",
    )
    ap.add_argument("--docs", type=int, default=2000, help="at most this many documents (all usable pages: ~1.7k)")
    ap.add_argument("--votes", type=int, default=500)
    ap.add_argument("--max-chars", type=int, default=3000, help="page text kept per document")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--min-relevant",
        type=int,
        default=family_corpus.MIN_RELEVANT,
        help="family: keep only questions with at least this many relevant pages (a higher P@5 ceiling)",
    )
    return ap


def load_corpus(args: argparse.Namespace) -> tuple[list[man_corpus.Doc], list[man_corpus.Query]]:
    """The documents and the judged queries of --corpus, with the time it took printed."""
    t0 = time.perf_counter()
    if args.corpus == "family":
        docs, queries = family_corpus.build(args.docs, args.seed, args.max_chars, args.min_relevant)
    else:
        docs, queries = man_corpus.build(["2", "3", "5", "7"], args.docs, args.seed, max_chars=args.max_chars)
    elapsed = time.perf_counter() - t0
    print(f"corpus {args.corpus}: {len(docs)} documents, {len(queries)} queries ({elapsed:.0f} s)", flush=True)
    return docs, queries


def voting_stack(prefix: str, docs: list[man_corpus.Doc], **env: str) -> tuple[bench_stack.BenchStack, Path]:
    """A bench stack for simulated voters (a swap shows within a second; no per-client vote limit: they all vote
    from 127.0.0.1), and the corpus written to a work folder of its own."""
    work = Path(f"/tmp/rag-bench-{prefix}-{uuid.uuid4().hex[:6]}")
    work.mkdir(parents=True)
    corpus = work / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    bench = bench_stack.start(prefix, work / "cache", RAG_MANIFEST_TTL_S="1", RAG_FEEDBACK_RATE_PER_S="0", **env)
    return bench, corpus


def split(queries: list[man_corpus.Query], seed: int) -> tuple[list[man_corpus.Query], list[man_corpus.Query]]:
    """The voted half and the held-out half (never voted on), shuffled with `seed`."""
    shuffled = queries[:]
    random.Random(seed).shuffle(shuffled)
    return shuffled[: len(shuffled) // 2], shuffled[len(shuffled) // 2 :]


def judged(queries: list[man_corpus.Query]) -> list[Judged]:
    return [Judged(q["query"], frozenset(q["relevant"])) for q in queries]


def vote_round(client: Client, voted: list[man_corpus.Query], budget: int) -> tuple[int, int]:
    """Each simulated user (one per query) asks, sees the top 5, votes 👍 relevant and 👎 the others."""
    votes = asked = 0
    for i, q in enumerate(voted):
        if votes >= budget:
            break
        status, body, _ = client.post("/ask", {"query": q["query"], "top_k": 5})
        asked += 1
        for c in body["citations"]:  # type: ignore[attr-defined]
            kind = "up" if c["doc_id"] in q["relevant"] else "down"
            vote = {"query_id": body["query_id"], "doc_id": c["doc_id"], "vote": kind, "user_id": f"sim-{i}"}
            st, _, _ = client.post("/feedback", vote)
            votes += st == 201
    return asked, votes


def row(name: str, q: Quality) -> str:
    cells = " | ".join(
        f"{q[s]['p@5']:.3f} | {q[s]['hit@5']:.3f} | {q[s]['ndcg@10']:.3f}" for s in ("repeated", "held-out")
    )
    return f"| {name} | {cells} |"


def remember_synthetic(api_module: object, rt: Runtime, queries: list[str], n: int) -> int:
    """n votes on n distinct synthetic queries (real query vectors plus noise) in the served memory."""
    live = api_module.runtime.live.current()  # type: ignore[attr-defined]
    if live.memory is None:
        return 0
    base = live.encoder.encode(queries)
    rng = np.random.default_rng(0)
    now = time.time()
    mem = live.memory
    for i in range(n):
        v = base[i % len(base)] + rng.normal(0, 0.02, base.shape[1]).astype(np.float32)
        vote = MemoryVote(f"synthetic question {i}", f"synthetic-doc-{i % 500}", f"syn-{i}", bool(i % 2), now)
        with mem._lock:  # the bench reaches into the served process's memory; requests may be running
            mem.memory.add(vote, v / np.linalg.norm(v))
    return len(mem.memory)


def main() -> int:
    ap = corpus_arguments(argparse.ArgumentParser())
    ap.add_argument("--force-swap", action="store_true", help="gate margin -1: measure the candidate itself")
    ap.add_argument("--no-memory", action="store_true", help="skip the feedback memory rows and the second round")
    ap.add_argument("--memory-votes", type=int, default=10_000, help="remembered votes for the /ask p99 check")
    ap.add_argument(
        "--second-night", action="store_true", help="after round 2, a second tune run on both rounds' votes"
    )
    args = ap.parse_args()
    if args.second_night and args.no_memory:
        ap.error("--second-night trains on the second round's votes, which --no-memory skips")

    docs, queries = load_corpus(args)
    bench, corpus = voting_stack(
        "loop", docs, RAG_MEMORY_REFRESH_S="2", RAG_MEMORY_ENABLED="false" if args.no_memory else "true"
    )
    settings, rt = bench.settings, bench.rt
    report = bench_stack.bootstrap_and_ingest(bench, corpus)
    api_module = load_api_module()
    api = ApiServer(api_module.app, port=0).start()
    client = Client(api.port)

    voted, heldout = split(queries, args.seed)
    sets = {"repeated": judged(voted), "held-out": judged(heldout)}
    before = quality(rt, sets)
    p99_before = ask_p99(client, [q["query"] for q in heldout])

    t = time.perf_counter()
    asked, votes = vote_round(client, voted, args.votes)
    sets["repeated"] = sets["repeated"][:asked]  # only the queries users actually asked
    print(f"users: {asked} queries asked, {votes} votes ({time.perf_counter() - t:.0f} s)", flush=True)
    before["repeated"] = quality(rt, {"repeated": sets["repeated"]})["repeated"]
    rows: list[tuple[str, Quality]] = []

    def add_row(name: str, q: Quality) -> None:
        rows.append((name, q))
        print(f"row: {row(name, q)}", flush=True)  # as measured: a later failure cannot lose it

    add_row("base", before)
    if not args.no_memory:
        time.sleep(settings.memory_refresh_s + 0.5)  # the served memory reads the new votes at most this often
        t = time.perf_counter()
        add_row("base + memory (seconds after the votes)", served_quality(api_module, sets))
        print(f"base + memory measured in the API process ({time.perf_counter() - t:.0f} s)", flush=True)

    if args.force_swap:
        os.environ["RAG_TUNE_MARGIN"] = "-1"  # read by the step functions' processes
    sfn.deploy(settings)
    t = time.perf_counter()
    code = cli.main(["tune", "--wait", "--timeout", "3600"])
    wall = time.perf_counter() - t
    run = list_runs(rt.store, 1)[0]
    time.sleep(settings.manifest_ttl_s + 0.5)
    after = quality(rt, sets)
    p99_after = ask_p99(client, [q["query"] for q in heldout])
    add_row("tuned" if run["status"] == "SWAPPED" else f"tuned ({run['status']}: live unchanged)", after)
    p99_memory = 0.0
    remembered = 0
    round2_votes = 0
    if not args.no_memory:
        add_row("tuned + memory", served_quality(api_module, sets))
        t = time.perf_counter()
        _, round2_votes = vote_round(client, voted[:asked], 10**9)  # the same users re-ask and vote again
        time.sleep(settings.memory_refresh_s + 0.5)
        add_row(f"tuned + memory, after round 2 (+{round2_votes} votes)", served_quality(api_module, sets))
        print(f"second round: {round2_votes} votes ({time.perf_counter() - t:.0f} s)", flush=True)
        if args.second_night:  # the next night: a tune run on both rounds' votes (48 hours after the first)
            t = time.perf_counter()
            cli.main(["tune", "--wait", "--timeout", "3600"])
            night2 = list_runs(rt.store, 1)[0]
            time.sleep(settings.manifest_ttl_s + 0.5)
            status = night2["status"] if night2["status"] == "SWAPPED" else f"{night2['status']}: live unchanged"
            add_row(f"night 2 ({status}, {time.perf_counter() - t:.0f} s): tuned", quality(rt, sets))
            add_row("night 2: tuned + memory", served_quality(api_module, sets))
        remembered = remember_synthetic(api_module, rt, [q["query"] for q in queries], args.memory_votes)
        p99_memory = ask_p99(client, [q["query"] for q in heldout])
    run_report = json.loads(rt.store.get_bytes(f"runs/{run['run_id']}/report.json")) if run.get("metrics") else {}
    api.stop()
    bench.stop()

    print(
        f"\n## One tune run: {len(docs)} docs, {report.chunks} chunks, {votes} votes on {asked} queries "
        f"(exit {code}, {run['status']})\n"
    )
    print("| queries | n | P@5 | hit@5 | nDCG@10 |\n|---|---|---|---|---|")
    for name in ("repeated", "held-out"):
        b, a = before[name], after[name]
        print(
            f"| {name} | {a['n']} | {b['p@5']:.3f} → {a['p@5']:.3f} | {b['hit@5']:.3f} → {a['hit@5']:.3f} | "
            f"{b['ndcg@10']:.3f} → {a['ndcg@10']:.3f} ({(a['ndcg@10'] - b['ndcg@10']) * 100:+.1f} pts) |"
        )
    if len(rows) > 1:
        print("\n## The feedback memory: what /ask serves (P@5 | hit@5 | nDCG@10)\n")
        print(
            "| ranking | repeated P@5 | hit@5 | nDCG@10 | held-out P@5 | hit@5 | nDCG@10 |\n"
            "|---|---|---|---|---|---|---|"
        )
        for name, q in rows:
            print(row(name, q))
        memory = run_report.get("memory") or {}
        if memory.get("rows"):
            print(
                f"\nsmoke's memory choice (train split): threshold {memory['threshold']}, weight {memory['weight']}, "
                f"{'enabled' if memory['enabled'] else 'shipped disabled'}: {'; '.join(memory['reasons'])}"
            )
            for name, m in memory["rows"].items():
                print(
                    f"  gate {name}: repeated nDCG@10 {m['repeated']['ndcg@10']:.3f}, "
                    f"held-out {m['heldout']['ndcg@10']:.3f} (n={m['heldout']['n']})"
                )
        if remembered:
            print(f"\n/ask over HTTP with {remembered} remembered votes, p99 over 300 requests: {p99_memory:.1f} ms")
            print(
                "  (the API runs in this process beside moto and the client, and moto's vote-index query is\n"
                "  O(table): each memory refresh costs this process tens of ms of CPU here. `make bench-query`\n"
                "  measures /ask with a 10k-vote memory in an API process of its own.)"
            )
    print("\n| step | wall time |\n|---|---|")
    for step, info in (run.get("steps") or {}).items():
        print(f"| {step} | {info['seconds']:.0f} s |")
    print(f"| whole run (start → final status) | {wall:.0f} s |")
    print(f"\n/ask over HTTP, p99 over 300 requests: {p99_before:.1f} ms before, {p99_after:.1f} ms after")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS of any step process (train is the largest): {peak_mb:.0f} MB")
    print(f"\ngate of this run: {run.get('gate')}")
    for name, m in (run.get("metrics") or {}).items():
        b, a = m["before"], m["after"]
        print(f"  gate set {name}: n={a['n']} nDCG@10 {b['ndcg@10']:.3f} → {a['ndcg@10']:.3f}")
    if args.force_swap and run.get("metrics"):
        field = {k: f.default for k, f in Settings.model_fields.items()}  # defaults, not this process's env
        default = decide(
            GateInput(
                metrics=run["metrics"],
                p99_ms=run["latency_ms"]["candidate_p99"],
                margin=field["tune_margin"],
                golden_tolerance=field["tune_golden_tolerance"],
                p99_budget_ms=field["tune_p99_budget_ms"],
                live_p99_ms=run["latency_ms"].get("live_p99", 0.0),
                p99_max_ratio=field["tune_p99_ratio"],
                tie_max_drop=field["tune_tie_max_drop"],
            )
        )
        verdict = "PASSED" if default.passed else f"REJECTED: {'; '.join(default.reasons)}"
        print(f"the default gate (margin {field['tune_margin']:+.3f}) on the same figures: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
