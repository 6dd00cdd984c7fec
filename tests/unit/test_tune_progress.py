"""Where a tune run is and why it failed: each step records itself when it starts, long steps write their
progress (throttled, best effort), `tune --wait` follows both, Cleanup turns the ASL's error into one line
with the failing step and how far it got, and `runs` shows that line. Fake clocks, no sleeps."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from rag_autotune import cli
from rag_autotune.errors import UpstreamError
from rag_autotune.tune import launch, steps
from rag_autotune.tune.runs import (
    ProgressWriter,
    failure_reason,
    progress_key,
    read_progress,
    read_run,
    record_step,
    step_started,
    update_run,
    write_run,
)
from rag_autotune.tune.state import CleanupEvent
from tests.fakes import FakeLauncher, MemoryArtifactStore, MemoryVectorIndex


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class BrokenStore(MemoryArtifactStore):
    """S3 unreachable for writes."""

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        raise UpstreamError(f"s3 put {key}: connection reset")


# ------------------------------------------------------------------------------------------ recording


def test_progress_writes_are_throttled_by_the_clock_and_the_last_is_always_written() -> None:
    store, clock = MemoryArtifactStore(), Clock()
    write = ProgressWriter(store, "r1", "train", "step", clock, every_s=5.0)
    seen: list[int] = []
    for done, t in [(0, 0.0), (1, 2.0), (2, 4.9), (3, 5.0), (4, 7.0), (5, 10.5), (6, 11.0)]:
        clock.t = 1000.0 + t
        write(done, 6)
        seen.append(json.loads(store.get_bytes(progress_key("r1")))["done"])
    assert seen == [0, 0, 0, 3, 3, 5, 6]  # the first, then every 5 s, and the last one at once
    assert read_progress(store, "r1") == {"step": "train", "done": 6, "total": 6, "unit": "step", "at": 1011.0}


def test_recording_where_a_run_is_never_fails_the_step() -> None:
    store = BrokenStore()
    ProgressWriter(store, "r1", "embed", "chunk", Clock())(1, 2)
    step_started(store, "r1", "embed", 1.0)
    assert read_progress(store, "r1") is None


def test_a_step_that_outlived_its_run_does_not_revive_it() -> None:
    """The workflow timed the step out and Cleanup wrote FAILED; the step's late start or finish is ignored."""
    store = MemoryArtifactStore()
    update_run(store, "r1", status="FAILED", step="train", steps={"prepare": {"seconds": 1.0}}, reason="x")
    step_started(store, "r1", "embed", 5.0)
    record_step(store, "r1", "train", 900.0)
    assert read_run(store, "r1") == {
        "run_id": "r1",
        "status": "FAILED",
        "step": "train",
        "steps": {"prepare": {"seconds": 1.0}},
        "reason": "x",
    }


# ------------------------------------------------------------------------------------------ following


def _scripted_follow(script: list[Callable[[MemoryArtifactStore, FakeLauncher], None]]) -> tuple[list[str], Any]:
    """Run launch.follow; each poll's sleep applies the next scripted change (what the workflow would write)."""
    store, launcher, clock = MemoryArtifactStore(), FakeLauncher(), Clock()
    events: list[str] = []
    pending = list(script)

    def sleep(seconds: float) -> None:
        clock.t += seconds
        pending.pop(0)(store, launcher)

    final = launch.follow(
        launcher,
        store,
        "r1",
        "arn",
        lambda r: events.append(f"{r['status']} {r.get('step')}"),
        sleep=sleep,
        clock=clock,
        on_progress=lambda p: events.append(f"  {p['step']} {p['done']}/{p['total']} {p['unit']}"),
    )
    assert not pending
    return events, final


def test_follow_reports_each_step_as_it_starts_and_its_progress() -> None:
    def progress(step: str, unit: str, done: int, total: int) -> Any:
        return lambda store, _: ProgressWriter(store, "r1", step, unit, Clock())(done, total)

    def finish_train_start_embed(store: MemoryArtifactStore, _: Any) -> None:
        ProgressWriter(store, "r1", "train", "step", Clock())(53, 53)
        record_step(store, "r1", "train", 12.0)
        step_started(store, "r1", "embed", 1020.0)  # the progress object is still train's: not embed's

    def cleanup(store: MemoryArtifactStore, launcher: FakeLauncher) -> None:
        update_run(store, "r1", status="FAILED", reason="embed: boom")
        launcher.state = "FAILED"

    events, final = _scripted_follow(
        [
            lambda store, _: update_run(store, "r1", status="RUNNING", step="prepare", steps={}),
            lambda store, _: record_step(store, "r1", "prepare", 1.0),
            lambda store, _: step_started(store, "r1", "train", 1003.0),
            progress("train", "step", 0, 53),
            lambda store, _: None,  # nothing new: nothing reported
            progress("train", "step", 27, 53),
            finish_train_start_embed,  # one poll sees embed running with train's last progress
            progress("embed", "chunk", 64, 100),
            cleanup,
        ]
    )
    assert events == [
        "STARTING None",
        "RUNNING prepare",
        "RUNNING train",
        "  train 0/53 step",
        "  train 27/53 step",
        "RUNNING embed",
        "  embed 64/100 chunk",
        "FAILED embed",
    ]
    assert final["status"] == "FAILED" and final["reason"] == "embed: boom"


def test_follow_gives_up_at_its_deadline_by_the_injected_clock() -> None:
    store, launcher, clock = MemoryArtifactStore(), FakeLauncher(), Clock()
    update_run(store, "r1", status="RUNNING", step="train")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.t += seconds

    final = launch.follow(
        launcher, store, "r1", "arn", lambda r: None, poll_s=2.0, timeout_s=10.0, sleep=sleep, clock=clock
    )
    assert final["status"] == "FAILED" and final["reason"] == "still running after 10 s"
    assert sleeps == [2.0] * 6


# ------------------------------------------------------------------------------------------ the reason


TRAINING = {"run_id": "r1", "status": "RUNNING", "step": "train", "step_started_at": 1010.0, "steps": {"prepare": {}}}
AT_27 = {"step": "train", "done": 27, "total": 53, "unit": "step", "at": 1500.0}


def _lambda_error(error_type: str, message: str) -> dict[str, str]:
    cause = {"errorType": error_type, "errorMessage": message, "stackTrace": ['  File "embed.py", line 1']}
    return {"Error": error_type, "Cause": json.dumps(cause)}


def test_reason_of_a_states_timeout_is_the_step_how_long_it_ran_and_how_far_it_got() -> None:
    timeout = {"Error": "States.Timeout", "Cause": ""}  # what the ASL's TimeoutSeconds gives Cleanup
    assert failure_reason(timeout, TRAINING, AT_27, now=1910.0) == "train: timed out after 900 s at step 27/53"
    lambda_timeout = _lambda_error("Sandbox.Timedout", "RequestId: x Error: Task timed out after 900.00 seconds")
    assert failure_reason(lambda_timeout, TRAINING, AT_27, now=1915.0) == "train: timed out after 900 s at step 27/53"
    assert failure_reason(timeout, TRAINING, None, now=1910.0) == "train: timed out after 900 s"


def test_reason_of_a_lambda_error_is_its_type_and_message_on_one_line() -> None:
    record = {**TRAINING, "step": "embed", "steps": {"prepare": {}, "train": {}}}
    error = _lambda_error("ArtifactError", "s3 put indexes/v1-c1/shard.tar:\n  connection reset")
    embedding = {"step": "embed", "done": 320, "total": 1200, "unit": "chunk"}
    assert (
        failure_reason(error, record, embedding, now=2000.0)
        == "embed: ArtifactError: s3 put indexes/v1-c1/shard.tar: connection reset (at chunk 320/1200)"
    )
    # the progress object is the previous step's: it says nothing about this one
    assert failure_reason(error, record, AT_27, now=2000.0).endswith("connection reset")
    assert failure_reason({"Error": "RuntimeError", "Cause": "boom"}, record, None, 0.0) == "embed: RuntimeError: boom"


def test_reason_when_the_failing_step_never_recorded_its_start() -> None:
    finished = {"run_id": "r1", "status": "RUNNING", "step": "train", "steps": {"prepare": {}, "train": {}}}
    error = _lambda_error("UpstreamError", "s3 put runs/r1/run.json: unreachable")
    assert (
        failure_reason(error, finished, AT_27, 0.0)
        == "the step after train: UpstreamError: s3 put runs/r1/run.json: unreachable"
    )
    assert failure_reason({"Error": "States.Timeout"}, finished, AT_27, 0.0) == "the step after train: timed out"
    assert failure_reason(_lambda_error("NotReady", "nothing is live"), {}, None, 0.0) == "NotReady: nothing is live"


def test_cleanup_records_the_reason_from_the_run_record_and_the_last_progress() -> None:
    """A 53-step train timed out by the ASL at step 27: the run record and `runs` say so."""
    store, index, clock = MemoryArtifactStore(), MemoryVectorIndex(), Clock(1000.0)
    update_run(store, "r1", status="RUNNING", step="prepare", started_at=1000.0, steps={})
    record_step(store, "r1", "prepare", 3.0)
    step_started(store, "r1", "train", 1010.0)
    report = steps.step_progress(store, "r1", "train", "step", clock)
    for k in range(28):
        clock.t = 1020.0 + 17 * k
        report(k, 53)
    run_state = {
        "run_id": "r1",
        "status": "RUNNING",
        "live": {"model_version": "v0", "index_version": "v0-c1"},
        "live_etag": '"e1"',
        "counts": {"votes": 6, "new_votes": 6},
        "prefix": "runs/r1/",
        "candidate": {"model_version": "v1", "index_version": "v1-c1"},
    }
    event = CleanupEvent.from_event({"run_id": "r1", "run": run_state, "error": {"Error": "States.Timeout"}})
    out = steps.cleanup(event, store=store, index=index, now=lambda: 1910.0)
    assert out.reason == "train: timed out after 900 s at step 27/53"
    run = read_run(store, "r1")
    assert (run["status"], run["step"], run["reason"]) == ("FAILED", "train", out.reason)


# ------------------------------------------------------------------------------------------ the CLI


def test_runs_shows_the_reason_and_a_running_step(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryArtifactStore()
    write_run(
        store,
        {
            "run_id": "r-failed",
            "status": "FAILED",
            "started_at": 10.0,
            "finished_at": 930.0,
            "step": "train",
            "reason": "train: timed out after 900 s at step 27/53",
        },
    )
    write_run(
        store,
        {
            "run_id": "r-swapped",
            "status": "SWAPPED",
            "started_at": 20.0,
            "finished_at": 300.0,
            "step": "swap",
            "counts": {"votes": 3125, "triplets": 1676},
            "training": {"triplets_used": 960, "triplets_left": 716},
        },
    )
    write_run(store, {"run_id": "r-now", "status": "RUNNING", "started_at": 30.0, "step": "embed"})
    store.put_bytes(
        progress_key("r-now"), json.dumps({"step": "embed", "done": 320, "total": 1200, "unit": "chunk"}).encode()
    )
    rt: Any = SimpleNamespace(store=store)
    assert cli.cmd_runs(rt, argparse.Namespace(limit=10)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[1:]] == [
        ["r-now", "RUNNING"],
        ["running:", "embed"],
        ["r-swapped", "SWAPPED"],  # a swap has no reason line
        ["budget:", "716"],  # but the time budget left triplets for another night
        ["r-failed", "FAILED"],
        ["reason:", "train:"],
    ]
    assert lines[2] == "  running: embed (chunk 320/1200)"
    assert lines[3].split()[5:8] == ["3125", "1676", "960"]  # votes, triplets, triplets used
    assert lines[1].split()[5:8] == ["0", "0", "-"]  # nothing trained yet
    assert lines[6] == "  reason: train: timed out after 900 s at step 27/53"


def test_watch_prints_a_line_per_step_and_progress_every_tenth_when_not_a_terminal() -> None:
    out, clock = io.StringIO(), Clock(0.0)
    watch = cli._TuneWatch(out, clock)
    assert not watch.bars  # a StringIO is no terminal
    watch.change({"status": "RUNNING", "step": "train"})
    for done in (0, 1, 5, 6, 27, 53):
        clock.t += 20.0
        watch.progress({"step": "train", "done": done, "total": 53, "unit": "step"})
    watch.change({"status": "FAILED", "step": "train"})
    assert out.getvalue().splitlines() == [
        "[   0.0s] RUNNING   step: train",
        "[  20.0s]           train: step 0/53",
        "[  80.0s]           train: step 6/53",
        "[ 100.0s]           train: step 27/53",
        "[ 120.0s]           train: step 53/53",
        "[ 120.0s] FAILED    step: train",
    ]


def test_watch_draws_a_bar_on_a_terminal_and_closes_it_at_the_next_step() -> None:
    out = io.StringIO()
    watch = cli._TuneWatch(out, Clock(0.0), bars=True)
    watch.progress({"step": "embed", "done": 320, "total": 1200, "unit": "chunk"})
    assert watch.bar is not None and (watch.bar.n, watch.bar.total) == (320, 1200)
    watch.change({"status": "RUNNING", "step": "smoke"})
    assert watch.bar is None
    assert "320/1200" in out.getvalue() and out.getvalue().rstrip().endswith("RUNNING   step: smoke")


def test_tune_wait_prints_the_failing_step_and_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryArtifactStore()

    def workflow(run_id: str) -> None:  # already over by the first poll: no sleeping
        reason = "train: timed out after 900 s at step 27/53"
        update_run(store, run_id, status="FAILED", step="train", steps={"prepare": {}}, reason=reason)

    launcher = FakeLauncher(workflow)
    launcher.state = "FAILED"
    rt: Any = SimpleNamespace(launcher=launcher, store=store)
    assert cli.cmd_tune(rt, argparse.Namespace(wait=True, timeout=60.0)) == 1
    lines = capsys.readouterr().out.splitlines()
    run_id = launcher.started[0][0]
    assert lines[0].endswith(run_id)
    assert lines[1].endswith("FAILED    step: train")
    assert lines[2:] == [f"run {run_id}: FAILED", "  reason: train: timed out after 900 s at step 27/53"]
