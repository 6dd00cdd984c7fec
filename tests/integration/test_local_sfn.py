"""The embedded workflow: an ASL file deployed to moto's server (in this process, the `moto_url` fixture),
executed by moto's interpreter, Lambda Task states running real handler files in subprocesses."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from rag_autotune.local import lambdas, sfn
from rag_autotune.settings import get_settings

HERE = Path(__file__).resolve().parents[1] / "events" / "sfn"
TEMPLATE = HERE / "template.yaml"
ASL = HERE / "test.asl.json"
NAME = "rag-autotune-tune-test"  # the test template's Name: the real workflow's name stays free


@pytest.fixture
def machine(moto_url: str) -> str:
    return sfn.deploy(get_settings(), TEMPLATE, ASL)


def _run(sm_arn: str, marker: Path, **extra: Any) -> dict[str, Any]:
    arn = sfn.start(sm_arn, trigger="test", extra={"marker": str(marker), **extra})
    return sfn.wait(arn, timeout_s=60, poll_s=0.2)


def _history(execution_arn: str) -> list[dict[str, Any]]:
    client = boto3.client("stepfunctions", region_name="us-east-1")
    return list(client.get_execution_history(executionArn=execution_arn)["events"])


def _failures(execution_arn: str) -> list[dict[str, Any]]:
    """Task failures: LambdaFunctionFailed for a function-ARN Resource, TaskFailed for lambda:invoke."""
    keys = {
        "LambdaFunctionFailed": "lambdaFunctionFailedEventDetails",
        "TaskFailed": "taskFailedEventDetails",
    }
    return [e[keys[e["type"]]] for e in _history(execution_arn) if e["type"] in keys]


def _execution_error(execution_arn: str) -> str:
    failed = [e for e in _history(execution_arn) if e["type"] == "ExecutionFailed"]
    return str(failed[0]["executionFailedEventDetails"]["error"])


def test_functions_from_template_reads_zip_functions_and_plain_env() -> None:
    functions = lambdas.functions_from_template(TEMPLATE)
    assert set(functions) == {
        "SfnTestOkFunction",
        "SfnTestLockedFunction",
        "SfnTestFlakyFunction",
        "SfnTestShardFunction",
    }
    ok = functions["SfnTestOkFunction"]
    assert (ok.path, ok.func) == (HERE / "handlers.py", "ok")
    assert ok.env == {"SFN_TEST_GREETING": "hello-from-template"}  # a !Ref is left to the process env
    with_refs = lambdas.functions_from_template(TEMPLATE, refs={"Bucket": "b-1"})["SfnTestOkFunction"]
    assert with_refs.env == {"SFN_TEST_GREETING": "hello-from-template", "SFN_TEST_BUCKET": "b-1"}
    assert (ok.timeout_s, ok.memory_mb) == (30.0, 256)
    assert functions["SfnTestFlakyFunction"].timeout_s == 60.0


def test_functions_from_template_reads_image_functions(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        "Resources:\n"
        "  TrainFunction:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      PackageType: Image\n"
        "      ImageConfig: {Command: [handler.handler]}\n"
        "      Timeout: 900\n"
        "    Metadata:\n"
        "      DockerContext: functions/tune/train\n"
        "      Dockerfile: Dockerfile\n"
    )
    fn = lambdas.functions_from_template(tmp_path / "template.yaml")["TrainFunction"]
    assert (fn.path, fn.func, fn.timeout_s) == (
        tmp_path / "functions/tune/train/handler.py",
        "handler",
        900.0,
    )


def test_success_flows_handler_output_through(machine: str, tmp_path: Path) -> None:
    desc = _run(machine, tmp_path / "marker", n=41, fail_times=0)
    assert desc["status"] == "SUCCEEDED", desc
    out = json.loads(desc["output"])
    assert out["flaky"] == {"calls": 1}
    assert out["ok"]["greeting"] == "hello"  # a !Ref to a Parameter default, substituted into the ASL
    result = out["ok"]["result"]
    assert result["status"] == "ok" and result["n"] == 42
    assert result["greeting"] == "hello-from-template"  # the template's Environment reached the handler
    assert result["bucket"] == get_settings().bucket  # !Ref of the template's bucket → the settings' bucket
    assert result["param"] is None  # !Ref of a Parameter: left to this process's environment
    assert result["function_name"] == "rag-autotune-SfnTestOkFunction"
    assert out["trigger"] == "test"


def test_named_exception_routes_catch_by_class_name(machine: str, tmp_path: Path) -> None:
    desc = _run(machine, tmp_path / "marker", mode="locked", fail_times=0)
    assert desc["status"] == "FAILED"
    assert _execution_error(desc["executionArn"]) == "RunLocked"  # the RefusedLocked Fail state
    (failure,) = _failures(desc["executionArn"])
    assert failure["error"] == "RunLocked"
    cause = json.loads(failure["cause"])
    assert cause["errorType"] == "RunLocked" and "lock held" in cause["errorMessage"]
    assert "handlers.py" in cause["stackTrace"][0]  # the runner's own frame is not in the trace


def test_other_exception_routes_states_all(machine: str, tmp_path: Path) -> None:
    desc = _run(machine, tmp_path / "marker", mode="other", fail_times=0)
    assert desc["status"] == "FAILED"
    assert _execution_error(desc["executionArn"]) == "TestFailed"
    assert [f["error"] for f in _failures(desc["executionArn"])] == ["ValueError"]
    history = _history(desc["executionArn"])
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"] == "PassStateEntered"]
    assert entered == ["Cleanup"]


def test_retry_retries_then_succeeds(machine: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    desc = _run(machine, marker, fail_times=1)
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["output"])["flaky"] == {"calls": 2}
    assert len(marker.read_text().splitlines()) == 2


def test_retry_exhausted_goes_to_catch(machine: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    desc = _run(machine, marker, fail_times=5)
    assert desc["status"] == "FAILED"
    assert len(marker.read_text().splitlines()) == 3  # the first attempt and MaxAttempts=2 retries
    assert _execution_error(desc["executionArn"]) == "TestFailed"
    assert [f["error"] for f in _failures(desc["executionArn"])] == ["UpstreamError"] * 3


def test_override_injects_a_fault_and_deploy_is_idempotent(moto_url: str, tmp_path: Path) -> None:
    handlers = HERE / "handlers.py"
    arn = sfn.deploy(get_settings(), TEMPLATE, ASL, {"SfnTestOkFunction": f"{handlers}:boom"})
    try:
        desc = _run(arn, tmp_path / "marker", fail_times=0)
        assert desc["status"] == "FAILED"
        assert [f["error"] for f in _failures(desc["executionArn"])] == ["RuntimeError"]
    finally:
        assert sfn.deploy(get_settings(), TEMPLATE, ASL) == arn  # same machine, override removed
    assert _run(arn, tmp_path / "marker2", fail_times=0)["status"] == "SUCCEEDED"


def test_deploy_names_the_machine_and_stores_the_schedule_rule(machine: str) -> None:
    client = boto3.client("stepfunctions", region_name="us-east-1")
    assert client.describe_state_machine(stateMachineArn=machine)["name"] == NAME
    events = boto3.client("events", region_name="us-east-1")
    rule = events.describe_rule(Name="rag-autotune-nightly-test")
    assert rule["ScheduleExpression"] == "cron(0 3 * * ? *)"  # a !Ref to the TestSchedule parameter
    targets = events.list_targets_by_rule(Rule="rag-autotune-nightly-test")["Targets"]
    assert [(t["Arn"], json.loads(t["Input"])) for t in targets] == [(machine, {"trigger": "schedule"})]
    assert sfn.schedule(TEMPLATE, ASL) == "cron(0 3 * * ? *)"


def test_direct_lambda_invoke_returns_function_error(machine: str) -> None:
    client = boto3.client("lambda", region_name="us-east-1")
    resp = client.invoke(FunctionName="rag-autotune-SfnTestLockedFunction", Payload=b'{"run_id": "r1"}')
    assert resp["FunctionError"] == "Unhandled"
    payload = json.loads(resp["Payload"].read())
    assert payload["errorType"] == "RunLocked" and "r1" in payload["errorMessage"]
    assert payload["stackTrace"]


def test_event_invocation_runs_in_the_background(machine: str, tmp_path: Path) -> None:
    client = boto3.client("lambda", region_name="us-east-1")
    marker = tmp_path / "marker"
    payload = json.dumps({"marker": str(marker), "fail_times": 0}).encode()
    resp = client.invoke(FunctionName="rag-autotune-SfnTestFlakyFunction", InvocationType="Event", Payload=payload)
    assert resp["StatusCode"] == 202
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "call\n"


MAP_ASL = HERE / "map.asl.json"


def _map_run(moto_url: str, tmp_path: Path, items: int, fail: int = -1) -> tuple[dict[str, Any], list[list[int]]]:
    """Deploy the Distributed Map test machine, write its item list to S3, run it; (description, seen rows)."""
    settings = get_settings()
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=settings.bucket)
    key = f"map-test/{tmp_path.name}.json"
    body = json.dumps([{"i": i} for i in range(items)]).encode()
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=settings.bucket, Key=key, Body=body)
    arn = sfn.deploy(settings, TEMPLATE, MAP_ASL, schedule_rule=False)
    run = sfn.start(arn, trigger="test", extra={"items": key, "dir": str(tmp_path), "fail": fail})
    desc = sfn.wait(run, timeout_s=120, poll_s=0.2)
    seen = [[int(x) for x in line.split()] for line in (tmp_path / "seen").read_text().splitlines()]
    return desc, seen


def test_a_distributed_map_runs_items_together_up_to_its_width_each_in_its_own_process(
    moto_url: str, tmp_path: Path
) -> None:
    """Issue 13.2: moto runs the S3 item list's items concurrently, at most MaxConcurrency (the template's
    MapWidth, 2) at once; the local runner gives each invocation its own process. The first two items wait for
    each other, so the run succeeds only if they really ran together."""
    desc, seen = _map_run(moto_url, tmp_path, items=5)
    assert desc["status"] == "SUCCEEDED", desc
    assert sorted(i for i, _, _ in seen) == [0, 1, 2, 3, 4]
    assert len({pid for _, pid, _ in seen}) == 5  # one process per invocation
    assert max(running for _, _, running in seen) == 2  # together, and never more than the width
    caches = dict(line.split(" ", 1) for line in (tmp_path / "caches").read_text().splitlines())
    assert caches["0"] != caches["1"]  # side by side, each in a sandbox (a /tmp) of its own
    assert len(set(caches.values())) == 2  # ... and the next ones reuse a free one, as a warm Lambda would


def test_a_map_item_that_keeps_failing_fails_the_map_and_its_catch_runs(moto_url: str, tmp_path: Path) -> None:
    """An item that fails after its Retry fails the Map with States.ExceedToleratedFailureThreshold, as on AWS
    (moto alone would let the Map succeed: local/moto_map.py), and the Map's Catch routes it."""
    desc, seen = _map_run(moto_url, tmp_path, items=4, fail=2)
    assert desc["status"] == "FAILED"
    assert [i for i, _, _ in seen].count(2) == 2  # the first attempt and its one retry
    history = _history(desc["executionArn"])
    (failed,) = [e["mapRunFailedEventDetails"] for e in history if e["type"] == "MapRunFailed"]
    assert failed["error"] == "States.ExceedToleratedFailureThreshold"
    assert failed["cause"].startswith("map item 2 failed: UpstreamError: shard 2 cannot reach S3"), failed
    assert _execution_error(desc["executionArn"]) == "MapFailed"
