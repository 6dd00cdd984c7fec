"""Issue 3 end to end on the embedded default: the real ASL in moto's Step Functions interpreter, each step
the real handler in a fresh process, votes given over HTTP, `rag-autotune tune --wait`, rollback, failures.

The session's stack is shared with the other e2e files, in any order: each test states what it needs (fresh
votes, a free lock, the feedback threshold) and compares with the live pair it found, never a version number
it assumes."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from rag_autotune import cli
from rag_autotune.local import sfn
from rag_autotune.paths import REPO
from rag_autotune.tune.runs import LOCK_KEY, list_runs
from rag_autotune.versions import read_manifest
from tests import browser as chromium
from tests.e2e import faults
from tests.http_client import call

TUNE_ENV = {
    "RAG_TUNE_MIN_FEEDBACK": "6",
    "RAG_TUNE_HELDOUT_FRACTION": "0.3",
    "RAG_TUNE_MARGIN": "-1",  # a tiny corpus proves the plumbing, not the gain (bench-loop measures that)
    # The gate's p99 is wall time, here on a shared machine: it must not decide these runs (make bench-loop
    # measures it; the unit tests drive the p99 check with a fake timer).
    "RAG_TUNE_P99_BUDGET_MS": "60000",
    "RAG_TUNE_P99_RATIO": "1000",
    # a small, quick LoRA: this proves the loop runs end to end; bench-loop measures the real recipe
    "RAG_TUNE_TRAIN_OVERRIDES": '{"epochs": 1, "max_seq_len": 64, "rank": 8, "alpha": 16}',
}
COPY_TRAIN = {"TuneTrainFunction": "tests/e2e/faults.py:copy_train"}


@pytest.fixture(scope="module")
def tuned(stack: SimpleNamespace) -> Iterator[SimpleNamespace]:
    saved = {k: os.environ.get(k) for k in TUNE_ENV}
    os.environ.update(TUNE_ENV)
    from rag_autotune.settings import get_settings

    get_settings.cache_clear()
    stack.machine = sfn.deploy(get_settings())
    yield stack
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    get_settings.cache_clear()


def live(stack: SimpleNamespace) -> dict[str, str]:
    found = read_manifest(stack.rt.store)
    assert found is not None
    return found[0].live.as_dict()


def snapshot(stack: SimpleNamespace) -> tuple[Any, ...]:
    """Everything a failed run must leave exactly as it was."""
    store = stack.rt.store
    return (
        store.get_with_etag("manifest.json"),
        sorted(stack.rt.index.versions()),
        sorted(k for k in store.list_keys("models/")),
        store.head_etag(LOCK_KEY),
    )


def tune(*extra: str) -> int:
    return cli.main(["tune", "--wait", "--timeout", "900", *extra])


def vote_like_users(stack: SimpleNamespace, max_queries: int = 1000) -> int:
    """Ask the golden questions whose answers are in the tiny corpus; 👍 relevant citations, 👎 the others."""
    docs = {json.loads(x)["id"] for x in stack.corpus.read_text().splitlines()}
    golden = [json.loads(x) for x in (REPO / "demo" / "golden.jsonl").read_text().splitlines()]
    votes = 0
    for g in [g for g in golden if set(g["relevant"]) & docs][:max_queries]:
        relevant = set(g["relevant"]) & docs
        asked = call(stack.url + "/ask", "POST", {"query": g["query"], "top_k": 5}).json
        for c in asked["citations"]:
            kind = "up" if c["doc_id"] in relevant else "down"
            r = call(
                stack.url + "/feedback", "POST", {"query_id": asked["query_id"], "doc_id": c["doc_id"], "vote": kind}
            )
            assert r.status == 201
            votes += 1
    return votes


def test_1_too_little_feedback_is_skipped(
    tuned: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever other tests voted, fewer new votes than this exist: the run has nothing to train on.
    monkeypatch.setenv("RAG_TUNE_MIN_FEEDBACK", str(len(tuned.rt.feedback.votes(None, limit=10**9)) + 1))
    before = snapshot(tuned)
    assert tune() == 3
    assert "SKIPPED" in capsys.readouterr().out
    assert list_runs(tuned.rt.store)[0]["status"] == "SKIPPED"
    assert "not enough feedback" in list_runs(tuned.rt.store)[0]["reason"]
    assert snapshot(tuned) == before


def model_number(version: str) -> int:
    return int(version.split("-")[0][1:])


def test_2_votes_tune_swap_and_rollback(tuned: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    assert vote_like_users(tuned) >= 6
    old = live(tuned)
    models_before = {k.split("/")[1] for k in tuned.rt.store.list_keys("models/")}
    assert tune() == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "SWAPPED" in out and any(line.startswith("arn:aws:states:") for line in out.splitlines())
    # each step shows as it starts (a short one may fall between two polls), and training shows its progress
    shown = [line.split("step: ")[1] for line in out.splitlines() if " step: " in line]
    order = ["-", "prepare", "train", "embed", "smoke", "swap"]
    assert shown == sorted(shown, key=order.index) and {"prepare", "train", "smoke", "swap"} <= set(shown), out
    assert any(" train: step " in line for line in out.splitlines()), out
    run = list_runs(tuned.rt.store)[0]
    assert run["status"] == "SWAPPED" and set(run["steps"]) >= {"prepare", "train", "embed", "smoke", "swap"}
    new = live(tuned)
    assert new == run["candidate"] and new != old
    assert model_number(new["model_version"]) > max(model_number(m) for m in models_before)  # a new number
    assert new["index_version"].startswith(new["model_version"] + "-c")
    # /ask now answers from the new pair, and /health says so
    asked = call(tuned.url + "/ask", "POST", {"query": "create a pipe"}).json
    assert (asked["model_version"], asked["index_version"]) == (new["model_version"], new["index_version"])
    assert call(tuned.url + "/health").json["model_version"] == new["model_version"]
    report = json.loads(tuned.rt.store.get_bytes(f"runs/{run['run_id']}/report.json"))
    assert report["decision"]["passed"] and report["latency_ms"]["samples"] >= 300
    assert "heldout" in report["metrics"]
    assert "<svg" in tuned.rt.store.get_bytes(f"runs/{run['run_id']}/report.html").decode()
    training = json.loads(tuned.rt.store.get_bytes(f"models/{new['model_version']}/training.json"))
    assert training["loss_curve"]
    assert report["training"]["loss_curve"] == training["loss_curve"]  # the page plots it
    assert report["thresholds"]["margin"] == -1 and report["movers"]["depth"] == 40
    assert tuned.rt.store.head_etag(LOCK_KEY) is None

    out_dir = tuned.rt.settings.cache_dir / "pages"
    assert cli.main(["report", "--out", str(out_dir)]) == 0
    page = (out_dir / f"report-{run['run_id']}.html").read_text()
    assert "Training loss" in page and "Gate: PASSED" in page and "Queries that moved" in page
    assert cli.main(["dashboard", "--out", str(out_dir)]) == 0
    board = (out_dir / "dashboard.html").read_text()
    assert run["run_id"] in board and "Feedback per day" in board
    served = call(tuned.url + "/dashboard")
    assert (
        served.status == 200 and served.headers["content-type"].startswith("text/html") and run["run_id"] in served.text
    )
    if chromium.CHROMIUM and chromium.DRIVER:  # the README's picture of a run report
        report_page = (out_dir / f"report-{run['run_id']}.html").as_uri()
        shot = chromium.screenshot(report_page, chromium.ARTIFACTS / "run-report.png", out_dir / "profile")
        assert shot.stat().st_size > 10_000
    capsys.readouterr()

    assert cli.main(["runs"]) == 0
    table = capsys.readouterr().out
    for r in list_runs(tuned.rt.store):  # every run recorded in this session, with its outcome
        assert any(r["run_id"] in line and r["status"] in line for line in table.splitlines()), r["run_id"]

    assert cli.main(["rollback"]) == 0
    assert live(tuned) == old
    asked = call(tuned.url + "/ask", "POST", {"query": "create a pipe"}).json
    assert (asked["model_version"], asked["index_version"]) == (old["model_version"], old["index_version"])
    assert cli.main(["rollback"]) == 0  # and forward again: the same conditional write
    assert live(tuned) == new


def _failed_run_leaves_everything(tuned: SimpleNamespace, overrides: dict[str, str], error: str) -> dict[str, Any]:
    sfn.deploy(tuned.settings, overrides=overrides)
    try:
        assert vote_like_users(tuned, max_queries=3) >= 6  # fresh votes, so the run gets past Prepare
        before = snapshot(tuned)
        assert tune() == 1
        assert snapshot(tuned) == before
    finally:
        sfn.deploy(tuned.settings)  # the real handlers again
    run = list_runs(tuned.rt.store)[0]
    assert run["status"] == "FAILED" and error in run["reason"], run
    return run


def leftovers(tuned: SimpleNamespace, run: dict[str, Any]) -> list[str]:
    """Whatever of the failed run's candidate is still in storage: its model, index, corpus and fan-out files."""
    store, candidate = tuned.rt.store, run["candidate"]
    prefixes = (
        f"models/{candidate['model_version']}/",
        f"indexes/{candidate['index_version']}/",
        f"corpus/{candidate['index_version']}/",
        f"runs/{run['run_id']}/fanout/",
    )
    return [k for p in prefixes for k in store.list_keys(p)]


def test_3_exception_in_embed_fails_and_removes_the_shadow(tuned: SimpleNamespace) -> None:
    run = _failed_run_leaves_everything(
        tuned, {"TuneEmbedFunction": "tests/e2e/faults.py:embed_then_raise"}, "EmbedCrashed"
    )
    # the map item fails (EmbedCrashed is not retried), so the Map does: the embed step never finished
    assert run["reason"].startswith(
        "embed: States.ExceedToleratedFailureThreshold: map item 0 failed: EmbedCrashed: disk full while embedding"
    ), run["reason"]
    assert leftovers(tuned, run) == []


def test_9_a_map_item_that_keeps_failing_fails_the_run_cleanly(
    tuned: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13.2: the corpus in several shards, one of which fails on every attempt (its Retry included) after
    writing half its part. The run ends FAILED with that item's error; the other items' parts, the shards and
    every other part of the candidate are gone, and live serving is exactly as before."""
    monkeypatch.setenv("RAG_TUNE_EMBED_ITEM_S", "0.4")  # shards of a few chunks: the tiny corpus makes several
    asked = call(tuned.url + "/ask", "POST", {"query": "create a pipe"}).json
    overrides = {**COPY_TRAIN, "TuneEmbedFunction": "tests/e2e/faults.py:one_shard_always_fails"}
    run = _failed_run_leaves_everything(tuned, overrides, "UpstreamError")
    assert f"map item {faults.FAULTY_SHARD} failed: UpstreamError: shard {faults.FAULTY_SHARD}" in run["reason"]
    assert run["step"] == "embed" and "embed" not in run["steps"]
    assert leftovers(tuned, run) == []
    again = call(tuned.url + "/ask", "POST", {"query": "create a pipe"}).json
    assert (again["model_version"], again["index_version"]) == (asked["model_version"], asked["index_version"])


def test_4_corrupt_model_artifact_fails_smoke(tuned: SimpleNamespace) -> None:
    run = _failed_run_leaves_everything(
        tuned, {**COPY_TRAIN, "TuneAssembleFunction": "tests/e2e/faults.py:assemble_then_corrupt"}, "CorruptArtifact"
    )
    assert run["step"] == "smoke" and "smoke" not in run["steps"]  # the gate refused to even load it
    assert run["reason"].startswith("smoke: CorruptArtifact: ")
    assert not tuned.rt.store.list_keys(f"models/{run['candidate']['model_version']}/")


def test_5_two_concurrent_starts_one_refused(tuned: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TUNE_MIN_FEEDBACK", "100000")  # the run that gets the lock skips: no training needed
    store = tuned.rt.store
    store.delete_prefix(faults.GO_KEY)
    sfn.deploy(tuned.settings, overrides={"TunePrepareFunction": "tests/e2e/faults.py:prepare_holding_the_lock"})
    codes: list[int] = []
    first = threading.Thread(target=lambda: codes.append(tune()))
    try:
        before = snapshot(tuned)
        assert before[3] is None, "no run holds the lock before the test"
        first.start()
        # The first run's Prepare holds the lock until GO_KEY exists: the second start surely overlaps it.
        assert faults.eventually(lambda: store.head_etag(LOCK_KEY) is not None)
        holder = json.loads(store.get_bytes(LOCK_KEY))["run_id"]
        assert tune() == 1  # refused (FAILED), while the first still holds the lock
        refused = list_runs(store, 1)[0]
        assert refused["run_id"] != holder and "RunLocked" in refused["reason"]
        assert json.loads(store.get_bytes(LOCK_KEY))["run_id"] == holder  # the refusal left the lock alone
    finally:
        store.put_bytes(faults.GO_KEY, b"{}")  # let the first run go on (also when an assertion above failed)
        if first.is_alive():
            first.join(300)
        sfn.deploy(tuned.settings)
        store.delete_prefix(faults.GO_KEY)
    assert codes == [3]  # the first: SKIPPED
    runs = {r["run_id"]: r for r in list_runs(store, 10)}
    assert runs[holder]["status"] == "SKIPPED"
    assert snapshot(tuned)[:3] == before[:3] and store.head_etag(LOCK_KEY) is None


def test_8_a_training_budget_too_small_fails_at_once_with_its_reason(
    tuned: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13.1: a budget that fits no training step ends the run FAILED with TrainBudgetTooSmall and the
    budget in its reason, from the real train handler, long before the function's timeout."""
    monkeypatch.setenv("RAG_TUNE_TRAIN_BUDGET_S", "1")
    run = _failed_run_leaves_everything(tuned, {}, "TrainBudgetTooSmall")
    assert run["reason"].startswith("train: TrainBudgetTooSmall: the training budget (1 s) ran out"), run["reason"]
    assert "RAG_TUNE_TRAIN_BUDGET_S" in run["reason"] and "timed out" not in run["reason"]
    assert float(run["finished_at"]) - float(run["started_at"]) < 600
    assert not tuned.rt.store.list_keys(f"models/{run['candidate']['model_version']}/")


def test_7_a_rejected_candidate_changes_nothing(tuned: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate says no: the candidate is a copy of the live model (no gain) and the margin asks for +0.5
    nDCG@10. The real Smoke step rejects it, the workflow's Reject branch runs Cleanup, and serving and storage
    are exactly as before: the manifest (bytes and ETag), the index versions, the models, the lock."""
    monkeypatch.setenv("RAG_TUNE_MARGIN", "0.5")
    sfn.deploy(tuned.settings, overrides=COPY_TRAIN)
    try:
        assert vote_like_users(tuned, max_queries=3) >= 6  # fresh votes, so the run gets past Prepare
        asked = call(tuned.url + "/ask", "POST", {"query": "create a pipe"}).json
        before = snapshot(tuned)
        assert tune() == 3  # REJECTED
    finally:
        sfn.deploy(tuned.settings)
    assert snapshot(tuned) == before
    store = tuned.rt.store
    run = list_runs(store)[0]
    assert run["status"] == "REJECTED" and "below the margin +0.5000" in run["reason"], run
    assert {"prepare", "embed", "smoke"} <= set(run["steps"]) and "swap" not in run["steps"]
    candidate = run["candidate"]
    assert set(run["removed"]) == {candidate["index_version"], candidate["model_version"]}
    assert not store.list_keys(f"models/{candidate['model_version']}/")
    assert candidate["index_version"] not in tuned.rt.index.versions()
    report = json.loads(store.get_bytes(f"runs/{run['run_id']}/report.json"))
    assert report["decision"]["passed"] is False and "; ".join(report["decision"]["reasons"]) == run["reason"]
    again = call(tuned.url + "/ask", "POST", {"query": "create a pipe"}).json
    assert (again["model_version"], again["index_version"]) == (asked["model_version"], asked["index_version"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"TuneTrainFunction": "tests/e2e/faults.py:train_with_s3_outage"},
        {
            "TuneTrainFunction": "tests/e2e/faults.py:copy_train",
            "TuneEmbedFunction": "tests/e2e/faults.py:embed_with_s3_outage",
        },
        {
            "TuneTrainFunction": "tests/e2e/faults.py:copy_train",
            "TuneSwapFunction": "tests/e2e/faults.py:swap_with_s3_outage",
        },
    ],
    ids=["train", "embed", "swap"],
)
def test_6_s3_outage_mid_step_fails_cleanly(tuned: SimpleNamespace, overrides: dict[str, str]) -> None:
    """S3 unreachable in the middle of train, embed or swap: retried by the ASL, then FAILED; live serving is
    exactly as before and the run's shadow model and index are gone."""
    asked = call(tuned.url + "/ask", "POST", {"query": "create a pipe"}).json
    run = _failed_run_leaves_everything(tuned, overrides, "UpstreamError")
    assert not tuned.rt.store.list_keys(f"models/{run['candidate']['model_version']}/")
    again = call(tuned.url + "/ask", "POST", {"query": "create a pipe"}).json
    assert (again["model_version"], again["index_version"]) == (asked["model_version"], asked["index_version"])
