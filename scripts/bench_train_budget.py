"""`make bench-train-budget`: the train step under its time budget at several vote volumes (issue 13.1).

Man pages become documents (scripts/man_corpus.py) and their first chunks the texts users were shown. A
simulated user asks a page's NAME description and votes 👍 on the first relevant page and 👎 on four others,
as in the issue's measurement (5 votes per question), until --votes votes. Prepare's own dataset code turns
the votes into the train split's triplets, and the real train step (train_step.train: LoRA with the default
recipe, merge, int8 export, parity, upload to an in-memory store) runs with --budget-s seconds of training.

Prints, per vote volume: the triplets, the measured seconds per optimizer step, the steps planned for every
triplet and the steps that fit, the triplets used and left for another night, and the step's wall time (the
budget plus merge, export and parity). CPU-heavy: every volume trains for about --budget-s seconds."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "layers" / "serve" / "python"), str(REPO), str(REPO / "scripts")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import man_corpus  # noqa: E402

from rag_autotune.chunking import chunk_document, embed_text  # noqa: E402
from rag_autotune.domain import Document, VersionPair, Vote  # noqa: E402
from rag_autotune.settings import Settings  # noqa: E402
from rag_autotune.tune import train_step  # noqa: E402
from rag_autotune.tune.budget import TrainBudgetTooSmall  # noqa: E402
from rag_autotune.tune.dataset import group_votes, split, triplets  # noqa: E402
from rag_autotune.tune.state import RunCounts, RunState  # noqa: E402
from tests.fakes import MemoryArtifactStore  # noqa: E402

PAIR = VersionPair("v0", "v0-c1")


def simulated_votes(queries: Sequence[man_corpus.Query], shown: dict[str, str], n: int, seed: int) -> list[Vote]:
    """👍 the first relevant page, 👎 four random others, per question, until `n` votes."""
    rng = random.Random(seed)
    doc_ids = sorted(shown)
    order = list(queries)
    rng.shuffle(order)
    votes: list[Vote] = []
    t = 1_700_000_000.0
    for qi, q in enumerate(order * (1 + n // max(1, 5 * len(order)))):
        relevant = [d for d in q["relevant"] if d in shown]
        if not relevant:
            continue
        others = rng.sample([d for d in doc_ids if d not in q["relevant"]], 4)
        for rank, (doc, kind) in enumerate([(relevant[0], "up"), *((d, "down") for d in others)], start=1):
            t += 1.0
            votes.append(Vote(f"q{qi}", doc, shown[doc], kind, rank, q["query"], PAIR, t))  # type: ignore[arg-type]
            if len(votes) >= n:
                return votes
    return votes


def shown_and_texts(docs: list[man_corpus.Doc]) -> tuple[dict[str, str], dict[str, str]]:
    """(page id → its first chunk's id: the text users were shown, chunk id → the text the encoder sees)."""
    shown: dict[str, str] = {}
    texts: dict[str, str] = {}
    for d in docs:
        chunks = chunk_document(Document(d["id"], d["title"], d["text"]))
        texts.update({c.chunk_id: embed_text(c) for c in chunks})
        if chunks:
            shown[d["id"]] = chunks[0].chunk_id
    return shown, texts


def print_table(results: list[dict]) -> None:
    header = f"{'votes':>6} {'triplets':>8} {'s/step':>7} {'planned':>7} {'fit':>4} {'trained':>7} {'used':>5} "
    print(header + f"{'left':>5} {'train s':>7} {'step s':>7}")
    for r in results:
        if "error" in r:
            print(f"{r['votes']:>6} {r['triplets']:>8}  {r['error']}")
            continue
        b = r["budget"]
        print(
            f"{r['votes']:>6} {r['triplets']:>8} {b['seconds_per_step'] or 0:>7.2f} {b['planned_steps']:>7} "
            f"{b.get('steps_that_fit', '-')!s:>4} {b['steps']:>7} {r['used']:>5} {r['left']:>5} "
            f"{r['seconds']['train']:>7.1f} {r['step_s']:>7.1f}"
        )


def run(votes: list[Vote], texts: dict[str, str], budget_s: float, cache: Path) -> dict:
    parts = split(group_votes(votes), 0.2)
    rows = triplets(parts.train, texts.get, list(texts.values()), seed=len(votes))
    store = MemoryArtifactStore()
    lines = [
        json.dumps({"query": r.query, "positive": r.positive, "negative": r.negative, "hard": r.hard, "at": r.at})
        for r in rows
    ]
    store.put_bytes("runs/b/train.jsonl", ("\n".join(lines) + "\n").encode())
    state = RunState(
        run_id="b",
        prefix="runs/b/",
        status="RUNNING",
        live=PAIR,
        live_etag='"e"',
        candidate=VersionPair("v1", "v1-c1"),
        counts=RunCounts(votes=len(votes), new_votes=len(votes), triplets=len(rows)),
    )
    started = time.time()
    out: dict = {"votes": len(votes), "triplets": len(rows), "queries": len({r.query for r in rows})}
    try:
        train_step.train(state, store=store, settings=Settings(cache_dir=cache), now=time.time, budget_s=budget_s)
    except TrainBudgetTooSmall as exc:
        out.update(error=f"TrainBudgetTooSmall: {exc}", step_s=round(time.time() - started, 1))
        return out
    training = json.loads(store.get_bytes("models/v1/training.json"))
    out.update(
        budget=training["budget"],
        used=training["counts"]["triplets_used"],
        left=training["counts"]["triplets_left"],
        seconds=training["seconds"],
        step_s=round(time.time() - started, 1),
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--votes", default="1000,3000", help="comma-separated vote volumes")
    ap.add_argument("--budget-s", type=float, default=150.0, help="RAG_TUNE_TRAIN_BUDGET_S for every run")
    ap.add_argument("--sections", default="2,5,7")
    ap.add_argument("--pages", type=int, default=1300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t = time.time()
    docs, queries = man_corpus.build(args.sections.split(","), args.pages, args.seed)
    shown, texts = shown_and_texts(docs)
    print(f"corpus: {len(docs)} pages, {len(texts)} chunks, {len(queries)} questions ({time.time() - t:.0f} s)")
    print(f"budget: {args.budget_s:.0f} s of training per run (RAG_TUNE_TRAIN_BUDGET_S), default TrainConfig")
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
        for n in (int(v) for v in args.votes.split(",")):
            r = run(simulated_votes(queries, shown, n, args.seed), texts, args.budget_s, Path(tmp))
            results.append(r)
            print(json.dumps(r), flush=True)
    print_table(results)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
