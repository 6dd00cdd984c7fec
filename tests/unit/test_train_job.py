"""Issue 13.1, TrainOn=sagemaker: the training job request the ASL builds, the job's entrypoint, and the reason
a failed job gives. Offline: the request is evaluated from infra/tune.asl.json with the template's
substitutions and checked against botocore's model of CreateTrainingJob; nothing here calls SageMaker."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from botocore.session import get_session
from botocore.validate import validate_parameters

from rag_autotune.domain import VersionPair
from rag_autotune.local.resources import load_template
from rag_autotune.paths import ASL, REPO, TEMPLATE
from rag_autotune.tune.budget import TRAIN_RESERVE_S, train_budget_s
from rag_autotune.tune.runs import failure_reason
from rag_autotune.tune.state import RunCounts, RunState

ROLE = "arn:aws:iam::123456789012:role/stack-TuneTrainJobRole-ABC"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ragautotune-train:python3.11"


def _substitutions(**overrides: str) -> dict[str, str]:
    """The state machine's DefinitionSubstitutions as a deploy with TrainOn=sagemaker resolves them."""
    params = {k: str(v.get("Default", "")) for k, v in load_template(TEMPLATE)["Parameters"].items()}
    params.update(TrainOn="sagemaker", TrainImageUri=IMAGE)
    values = {
        "TrainOn": params["TrainOn"],
        "TrainImageUri": params["TrainImageUri"],
        "TrainInstanceType": params["TrainInstanceType"],
        "TrainJobSeconds": params["TrainJobSeconds"],
        "TrainJobRoleArn": ROLE,
        "ArtifactBucket": "stack-artifactbucket-1x2y3z",
        "Region": "us-east-1",
    }
    values.update(overrides)
    return values


def _asl(values: dict[str, str]) -> dict[str, Any]:
    text = ASL.read_text()
    text = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), f"arn:aws:lambda:us-east-1:1:function:{m[1]}"), text)
    return dict(json.loads(text))


# A reader of the few ASL expressions the TrainJob state uses: JSONPath $.a.b and three intrinsics.


def _path(expr: str, data: Any) -> Any:
    for part in expr[2:].split("."):
        data = data[part]
    return data


def _args(text: str) -> list[str]:
    return [a.strip() for a in re.findall(r"'[^']*'|[^,]+", text)]


def _expr(expr: str, data: Any) -> Any:
    if expr.startswith("$."):
        return _path(expr, data)
    name, inner = re.fullmatch(r"States\.(\w+)\((.*)\)", expr).groups()  # type: ignore[union-attr]
    args = [a[1:-1] if a.startswith("'") else _path(a, data) for a in _args(inner)]
    if name == "Format":
        template, *rest = args
        for value in rest:
            template = template.replace("{}", str(value), 1)
        return template
    if name == "JsonToString":
        return json.dumps(args[0], separators=(",", ":"))
    if name == "StringToJson":
        return json.loads(args[0])
    raise AssertionError(f"unexpected intrinsic {name}")


def _evaluate(params: Any, data: Any) -> Any:
    if isinstance(params, list):
        return [_evaluate(v, data) for v in params]
    if not isinstance(params, dict):
        return params
    return {
        k[:-2] if k.endswith(".$") else k: _expr(v, data) if k.endswith(".$") else _evaluate(v, data)
        for k, v in params.items()
    }


def _run(run_id: str = "20261202T134400Z-ab12") -> RunState:
    return RunState(
        run_id=run_id,
        prefix=f"runs/{run_id}/",
        status="RUNNING",
        live=VersionPair("v3", "v3-c2"),
        live_etag='"0123456789abcdef0123456789abcdef"',
        candidate=VersionPair("v4", "v4-c2"),
        counts=RunCounts(
            votes=31250,
            new_votes=31250,
            queries=6250,
            train_queries=5000,
            heldout_queries=1250,
            triplets=16760,
            hard_negatives=12000,
        ),
    )


def _request(run: RunState, values: dict[str, str] | None = None) -> dict[str, Any]:
    asl = _asl(values or _substitutions())
    state = {"run_id": run.run_id, "trigger": "schedule", "run": run.to_event(), "train_on": {"on": "sagemaker"}}
    job = asl["States"]["TrainJob"]
    assert job["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    return dict(_evaluate(job["Parameters"], state))


def _check_against_botocore(request: dict[str, Any]) -> None:
    model = get_session().get_service_model("sagemaker")
    validate_parameters(request, model.operation_model("CreateTrainingJob").input_shape)  # raises if it does not fit
    for shape, value in (
        ("TrainingJobName", request["TrainingJobName"]),
        ("RoleArn", request["RoleArn"]),
        ("AlgorithmImage", request["AlgorithmSpecification"]["TrainingImage"]),
        ("S3Uri", request["OutputDataConfig"]["S3OutputPath"]),
    ):
        meta = model.shape_for(shape).metadata
        assert re.fullmatch(meta["pattern"], value), (shape, value)
        assert len(value) <= meta.get("max", 10**6), (shape, value)
    limit = model.shape_for("HyperParameterValue").metadata["max"]
    assert all(len(v) <= limit for v in request["HyperParameters"].values())


def test_the_training_job_request_has_the_image_role_instance_data_and_budget() -> None:
    run = _run()
    request = _request(run)
    _check_against_botocore(request)
    params = {k: v.get("Default") for k, v in load_template(TEMPLATE)["Parameters"].items()}

    algorithm = request["AlgorithmSpecification"]
    assert algorithm["TrainingImage"] == IMAGE  # the train function's image, pushed by sam deploy
    assert algorithm["ContainerEntrypoint"][-1] == "/var/task/train_job.py"
    dockerfile = (REPO / "functions/tune/train/Dockerfile").read_text()
    assert "train_job.py ${LAMBDA_TASK_ROOT}/" in dockerfile and "/usr/bin/python3.11" in dockerfile
    assert request["RoleArn"] == ROLE
    assert request["ResourceConfig"]["InstanceType"] == params["TrainInstanceType"]
    assert request["ResourceConfig"]["InstanceCount"] == 1
    (channel,) = request["InputDataConfig"]
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://stack-artifactbucket-1x2y3z/runs/{run.run_id}/"
    assert (
        request["OutputDataConfig"]["S3OutputPath"] == f"s3://stack-artifactbucket-1x2y3z/runs/{run.run_id}/train-job/"
    )
    assert request["Environment"]["RAG_BUCKET"] == "stack-artifactbucket-1x2y3z"

    # The stopping condition is the job's time, and the container's training budget derives from it.
    seconds = request["StoppingCondition"]["MaxRuntimeInSeconds"]
    assert seconds == params["TrainJobSeconds"] and isinstance(seconds, int)
    hyper = request["HyperParameters"]
    assert train_budget_s(None, float(hyper["max_runtime_s"])) == seconds - TRAIN_RESERVE_S
    assert RunState.from_event(json.loads(hyper["run"])) == run  # the whole run state, as Train gets it


def test_a_scheduled_runs_name_fits_and_a_wrong_substitution_is_caught() -> None:
    _check_against_botocore(_request(_run("0b7f3c3e-8d2a-4b8e-9a51-6c0f1d2e3a4b")))  # EventBridge's execution name
    with pytest.raises(Exception, match="Invalid type|InstanceCount|MaxRuntimeInSeconds"):
        broken = _request(_run())
        broken["StoppingCondition"]["MaxRuntimeInSeconds"] = str(broken["StoppingCondition"]["MaxRuntimeInSeconds"])
        _check_against_botocore(broken)
    with pytest.raises(Exception, match="RoleArn"):  # the role is empty unless TrainOn=sagemaker
        _check_against_botocore(_request(_run(), _substitutions(TrainJobRoleArn="")))


def test_the_choice_runs_the_lambda_by_default_and_the_job_for_sagemaker() -> None:
    defaults = _substitutions(TrainOn=str(load_template(TEMPLATE)["Parameters"]["TrainOn"]["Default"]))
    asl = _asl(defaults)
    assert asl["States"]["EnoughFeedback"]["Default"] == "TrainWhere"
    assert asl["States"]["TrainWhere"]["Parameters"] == {"on": "lambda"}
    (choice,) = asl["States"]["TrainOn"]["Choices"]
    assert (choice["Variable"], choice["StringEquals"], choice["Next"]) == ("$.train_on.on", "sagemaker", "TrainJob")
    assert asl["States"]["TrainOn"]["Default"] == "Train"
    job = asl["States"]["TrainJob"]
    assert job["Next"] == asl["States"]["Train"]["Next"] == "Plan"
    assert job["Catch"][0]["Next"] == "Cleanup" and job["Retry"]
    assert job["ResultPath"] is None  # $.run passes on to Plan as Prepare wrote it


# ---------------------------------------------------------------- the job's entrypoint


def _entry() -> ModuleType:
    path = REPO / "functions/tune/train/train_job.py"
    spec = importlib.util.spec_from_file_location("train_job_entry", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hyperparameters(tmp_path: Path, run: RunState) -> Path:
    path = tmp_path / "config" / "hyperparameters.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run": json.dumps(run.to_event()), "max_runtime_s": "7200"}))
    return path


def test_the_entrypoint_trains_the_run_within_the_jobs_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag_autotune.tune import train_step

    calls: list[tuple[RunState, float]] = []
    monkeypatch.setattr(train_step, "train", lambda state, **kw: calls.append((state, kw["budget_s"])) or state)
    failure = tmp_path / "output" / "failure"
    assert _entry().main(_hyperparameters(tmp_path, _run()), failure) == 0
    assert calls == [(_run(), 7200 - TRAIN_RESERVE_S)] and not failure.exists()


def test_a_failed_job_names_its_error_and_the_run_reason_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag_autotune.tune import train_step
    from rag_autotune.tune.budget import TrainBudgetTooSmall

    def too_small(state: RunState, **kw: Any) -> RunState:
        raise TrainBudgetTooSmall("one training step takes 20.0 s: the 30 s budget fits none of the 53 planned")

    monkeypatch.setattr(train_step, "train", too_small)
    failure = tmp_path / "output" / "failure"
    assert _entry().main(_hyperparameters(tmp_path, _run()), failure) == 1
    written = failure.read_text()
    assert written.startswith("TrainBudgetTooSmall: one training step takes 20.0 s")

    # Step Functions' Catch: States.TaskFailed, the Cause the job's description with SageMaker's FailureReason.
    cause = {
        "TrainingJobName": "rag-autotune-x",
        "TrainingJobStatus": "Failed",
        "FailureReason": f"AlgorithmError: {written}",
    }
    error = {"Error": "States.TaskFailed", "Cause": json.dumps(cause)}
    reason = failure_reason(error, {"step": "train"}, None, now=0.0)
    assert reason.startswith("train: States.TaskFailed: AlgorithmError: TrainBudgetTooSmall: one training step")
