"""The embedded default's /ask tail, started as `make run` starts it (`rag-autotune up` with the demo corpus), in
four rows of `make bench-query`: quiet; during a burst of votes on /feedback; right after the burst; during a
tune run (`rag-autotune tune`, measured once its train step runs, torch on every core). Each row is sequential
/ask calls over HTTP on one keep-alive connection, as one user would send them.

The burst is its own process: a few /ask calls for query ids, then the votes as fast as the API takes them, on
another connection, from distinct voters. The stack runs with the per-client vote rate off
(RAG_FEEDBACK_RATE_PER_S=0): from one address the limit would refuse most of the burst, which on a real site
comes from many clients.

Run alone: `python scripts/bench_up.py` (also `bench_query.py --only-up`)."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "rag_autotune.cli"]
WARMUP = 50
START_TIMEOUT_S = 900.0
V0_CACHE = Path("/tmp/rag-bench-up-v0")  # the exported base model, kept between runs (its export takes minutes)


@dataclass
class Row:
    name: str
    ms: list[float]
    load: tuple[float, float, float]
    note: str = ""

    def cells(self) -> str:
        a = np.asarray(self.ms)
        p50, p90, p99 = (float(np.percentile(a, q)) for q in (50, 90, 99))
        load = " / ".join(f"{x:.1f}" for x in self.load)
        return (
            f"| {self.name}{(' (' + self.note + ')') if self.note else ''} | {p50:.1f} | {p90:.1f} | {p99:.1f} "
            f"| {a.max():.1f} | {len(a)} | {load} |"
        )


HEADER = (
    "| /ask on `rag-autotune up` | p50 ms | p90 ms | p99 ms | max ms | n | load 1/5/15 min |\n"
    "|---|---|---|---|---|---|---|"
)


@dataclass
class Up:
    proc: subprocess.Popen[str]
    api_port: int
    endpoint: str
    env: dict[str, str]
    state: Path
    banner: list[str] = field(default_factory=list)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_up(work: Path, **extra_env: str) -> Up:
    """`rag-autotune up` in its own process with its own state folder and ports, as `make run` runs it; returns
    once it printed its banner (the demo corpus is ingested and the API serves)."""
    state = work / "state"
    if V0_CACHE.exists():  # the export of the base model is not what is measured: reuse an earlier one
        shutil.copytree(V0_CACHE, state / "s3" / "models" / "v0", dirs_exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAG_"))},
        "PYTHONPATH": f"{REPO / 'layers' / 'serve' / 'python'}{os.pathsep}{REPO}",
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "RAG_STATE_DIR": str(state),
        "RAG_CACHE_DIR": str(work / "cache"),
        "RAG_FEEDBACK_RATE_PER_S": "0",
        **extra_env,
    }
    port = free_port()
    log = (work / "up.log").open("w")
    proc = subprocess.Popen(
        [*CLI, "up", "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    banner: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while not any(b.startswith("Ctrl-C stops it") for b in banner):
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
        except queue.Empty:
            proc.kill()
            raise RuntimeError(f"`up` did not come up in {START_TIMEOUT_S:.0f} s; see {work / 'up.log'}") from None
        if line is None:
            raise RuntimeError(f"`up` exited {proc.wait()}; see {work / 'up.log'}\n{''.join(banner)}")
        banner.append(line)
    endpoint = next(b for b in banner if b.startswith("export ")).split("=", 1)[1].strip()
    models = state / "s3" / "models" / "v0"
    if not V0_CACHE.exists() and models.exists():
        shutil.copytree(models, V0_CACHE)
    return Up(proc, port, endpoint, env, state, banner)


def golden_queries() -> list[str]:
    return [json.loads(x)["query"] for x in (REPO / "demo" / "golden.jsonl").read_text().splitlines()]


def _post(conn: http.client.HTTPConnection, path: str, body: dict[str, object]) -> dict[str, object]:
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status not in (200, 201):
        raise RuntimeError(f"{path} answered {resp.status}: {data[:300]!r}")
    return json.loads(data)  # type: ignore[no-any-return]


def ask_times(port: int, queries: list[str], n: int, until: Callable[[], bool] | None = None) -> list[float]:
    """n sequential /ask calls after WARMUP (and on until `until()` is true, when given), in ms."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    samples: list[float] = []
    i = 0
    while len(samples) < n or (until is not None and not until()):
        t = time.perf_counter()
        _post(conn, "/ask", {"query": queries[i % len(queries)], "top_k": 5})
        if i >= WARMUP:
            samples.append((time.perf_counter() - t) * 1000)
        i += 1
    conn.close()
    return samples


def burst(port: int, votes: int) -> None:
    """`--burst`: `votes` votes on /feedback as fast as they are taken, from distinct voters, on the citations
    of a few asked queries; prints how many were recorded."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    shown = []
    for q in golden_queries()[:40]:
        r = _post(conn, "/ask", {"query": q, "top_k": 5})
        shown += [(str(r["query_id"]), str(c["doc_id"])) for c in r["citations"]]  # type: ignore[attr-defined]
    recorded = 0
    for k in range(votes):
        qid, doc = shown[k % len(shown)]
        r = _post(
            conn,
            "/feedback",
            {"query_id": qid, "doc_id": doc, "vote": "up" if k % 3 else "down", "user_id": f"burst-{k}"},
        )
        recorded += r["status"] == "recorded"
    print(recorded, flush=True)


def _status(up: Up, arn: str) -> str:
    """The execution's status. (moto's execution history lists only the first, Pass, state of a local run: the
    steps themselves log to `up`'s stderr, up.log, with timestamps.)"""
    import boto3

    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=up.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return str(sfn.describe_execution(executionArn=arn)["status"])


def _step(up: Up, run_id: str) -> str:
    """The step the run record names now ("" before the first step records itself)."""
    from rag_autotune.adapters.aws import use_endpoint
    from rag_autotune.errors import ArtifactNotFound
    from rag_autotune.runtime import Runtime
    from rag_autotune.settings import Settings
    from rag_autotune.tune.runs import read_run

    use_endpoint(up.endpoint)  # this bench process reads the stack it started, with the local credentials
    bucket = up.env.get("RAG_BUCKET", Settings.model_fields["bucket"].default)  # up's, not this process's
    try:
        return str(read_run(Runtime(Settings(bucket=bucket)).store, run_id).get("step") or "")
    except ArtifactNotFound:  # not written yet
        return ""


def _wait_for_step(up: Up, arn: str, run_id: str, step: str, timeout_s: float = 900.0) -> str:
    """Poll the run record until `step` runs (or the run ended, or timeout_s): the step it names then."""
    deadline = time.monotonic() + timeout_s
    seen = _step(up, run_id)
    while seen != step and time.monotonic() < deadline and _status(up, arn) == "RUNNING":
        time.sleep(1.0)
        seen = _step(up, run_id)
    return seen


class Rows(list[Row]):
    """The rows so far; each is also printed as soon as it is measured (a long run shows its progress)."""

    def append(self, row: Row) -> None:
        print(row.cells(), flush=True)
        super().append(row)


def run_rows(work: Path, requests: int, votes: int) -> list[Row]:
    work.mkdir(parents=True, exist_ok=True)
    up = start_up(work)
    queries = golden_queries()
    rows = Rows()
    try:
        rows.append(Row("quiet", ask_times(up.api_port, queries, requests), os.getloadavg()))

        writer = subprocess.Popen(
            [sys.executable, __file__, "--burst", str(up.api_port), str(votes)], stdout=subprocess.PIPE, text=True
        )
        t = time.perf_counter()
        during = ask_times(up.api_port, queries, requests, until=lambda: writer.poll() is not None)
        took = time.perf_counter() - t
        out, _ = writer.communicate(timeout=600)
        if writer.returncode:
            raise RuntimeError(f"the vote burst failed ({writer.returncode})")
        rows.append(
            Row(
                f"during a burst of {votes} votes",
                during,
                os.getloadavg(),
                f"{out.split()[-1]} recorded; /ask timed until both were done, {took:.0f} s",
            )
        )
        rows.append(Row("right after the burst", ask_times(up.api_port, queries, requests), os.getloadavg()))

        started = subprocess.run(
            [*CLI, "tune"],
            cwd=REPO,
            env={**up.env, "AWS_ENDPOINT_URL": up.endpoint},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        arn = next((w for w in started.stdout.split() if w.startswith("arn:")), None)
        if arn is None:
            raise RuntimeError(f"`rag-autotune tune` did not start a run: {started.stdout}{started.stderr}")
        run_id = arn.rsplit(":", 1)[1]  # the execution is named after its run
        reached = _wait_for_step(up, arn, run_id, "train")  # the heaviest step: torch on every core
        ms = ask_times(up.api_port, queries, requests)
        after = _step(up, run_id)
        rows.append(
            Row(
                "during a tune run",
                ms,
                os.getloadavg(),
                f"step {reached or '?'} at the start, {after or '?'} at the end; the steps' logs in {work / 'up.log'}",
            )
        )
    finally:
        code = up.stop()
        if code:
            print(f"`up` exited {code}; see {work / 'up.log'}", file=sys.stderr)
    return rows


def print_rows(rows: list[Row]) -> None:
    print(f"\n## /ask on the embedded default (`rag-autotune up`; {os.cpu_count() or 0} cores)\n")
    print(HEADER)
    for row in rows:
        print(row.cells())
    print("\nload: os.getloadavg() when the row ended. On a shared machine, figures measured under load are noisy.")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--votes", type=int, default=3000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--burst", nargs=2, type=int, help=argparse.SUPPRESS)  # the vote writer's own process
    args = ap.parse_args()
    if args.burst:
        burst(*args.burst)
        return 0
    work = args.work or Path(f"/tmp/rag-bench-up-{os.getpid()}")
    print_rows(run_rows(work, args.requests, args.votes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
