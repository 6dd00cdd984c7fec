"""Workflows contract: the same assertions against the inline fake and StepFunctionsWorkflows on moto's server
(a one-state machine: the contract is the port, not a workflow)."""

from __future__ import annotations

import json
import typing

import boto3
import pytest

from rag_autotune.adapters.aws import CLIENT_CONFIG
from rag_autotune.adapters.stepfunctions import StepFunctionsWorkflows
from rag_autotune.domain import ExecutionStatus
from rag_autotune.errors import ArtifactNotFound, ConflictError
from rag_autotune.ports import Workflows
from tests.fakes import InlineWorkflows, MemoryArtifactStore, MemoryVectorIndex

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
ROLE = "arn:aws:iam::123456789012:role/contract"


@pytest.fixture(params=["inline", "stepfunctions"])
def workflows(request: pytest.FixtureRequest) -> Workflows:
    if request.param == "inline":
        fake = InlineWorkflows(MemoryArtifactStore(), MemoryVectorIndex(), None)
        fake.hold = True  # the payloads below are not ingest jobs: the contract never runs one
        return fake
    moto_url: str = request.getfixturevalue("moto_url")
    unique: str = request.getfixturevalue("unique")
    client = boto3.session.Session().client(
        "stepfunctions", region_name="us-east-1", endpoint_url=moto_url, config=CLIENT_CONFIG
    )
    arn = client.create_state_machine(name=f"contract-{unique}", definition=json.dumps(PASS), roleArn=ROLE)
    return StepFunctionsWorkflows(client, str(arn["stateMachineArn"]))


def test_a_started_execution_is_described_by_its_id(workflows: Workflows) -> None:
    execution = workflows.start("job-1", {"run": {"n": 1}})
    assert workflows.describe(execution).status in typing.get_args(ExecutionStatus)


def test_a_name_is_one_execution(workflows: Workflows) -> None:
    workflows.start("job-1", {"run": {"n": 1}})
    with pytest.raises(ConflictError):
        workflows.start("job-1", {"run": {"n": 2}})


def test_an_unknown_execution_is_not_found(workflows: Workflows) -> None:
    execution = workflows.start("job-1", {"run": {"n": 1}})
    with pytest.raises(ArtifactNotFound):
        workflows.describe(execution.replace("job-1", "job-2"))
