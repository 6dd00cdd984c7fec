"""Starting and watching the tune and ingest state machines (AWS, LocalStack or the embedded moto server alike)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain import Execution
from ..errors import ArtifactNotFound, ConflictError, NotReady, UpstreamError

STATE_MACHINE_NAME = "rag-autotune-tune"
INGEST_STATE_MACHINE_NAME = "rag-autotune-ingest"


def find_state_machine(client: Any, name: str, setting: str) -> str:
    """The ARN of the state machine named `name`; NotReady (naming `setting`) when there is none."""
    try:
        for page in client.get_paginator("list_state_machines").paginate():
            for sm in page["stateMachines"]:
                if sm["name"] == name:
                    return str(sm["stateMachineArn"])
    except (ClientError, BotoCoreError) as exc:
        raise UpstreamError(f"cannot list state machines: {exc}") from exc
    raise NotReady(f"no state machine named {name}: deploy the stack (or run `make run`), or set {setting}")


class TuneLauncher:
    def __init__(self, client: Any, state_machine_arn: str | None = None) -> None:
        self._sfn = client
        self._arn = state_machine_arn

    def state_machine_arn(self) -> str:
        if not self._arn:
            self._arn = find_state_machine(self._sfn, STATE_MACHINE_NAME, "RAG_STATE_MACHINE_ARN")
        return self._arn

    def start(self, run_id: str, trigger: str = "cli") -> str:
        try:
            resp = self._sfn.start_execution(
                stateMachineArn=self.state_machine_arn(), name=run_id, input=json.dumps({"trigger": trigger})
            )
        except (ClientError, BotoCoreError) as exc:
            raise UpstreamError(f"cannot start the tune: {exc}") from exc
        return str(resp["executionArn"])

    def status(self, execution_arn: str) -> str:
        """RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED."""
        try:
            return str(self._sfn.describe_execution(executionArn=execution_arn)["status"])
        except (ClientError, BotoCoreError) as exc:
            raise UpstreamError(f"cannot describe {execution_arn}: {exc}") from exc


class StepFunctionsWorkflows:
    """Workflows over one state machine (the ingest fan-out's, found by name unless its ARN is given)."""

    def __init__(self, client: Any, state_machine_arn: str | None = None, name: str = INGEST_STATE_MACHINE_NAME):
        self._sfn, self._arn, self._name = client, state_machine_arn, name

    def _machine(self) -> str:
        if not self._arn:
            self._arn = find_state_machine(self._sfn, self._name, "RAG_INGEST_STATE_MACHINE_ARN")
        return self._arn

    def start(self, name: str, payload: Mapping[str, Any]) -> str:
        try:
            resp = self._sfn.start_execution(stateMachineArn=self._machine(), name=name, input=json.dumps(payload))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                raise ConflictError(f"an execution named {name} exists") from exc
            raise UpstreamError(f"cannot start {name}: {exc}") from exc
        except BotoCoreError as exc:
            raise UpstreamError(f"cannot start {name}: {exc}") from exc
        return str(resp["executionArn"])

    def describe(self, execution: str) -> Execution:
        try:
            desc = self._sfn.describe_execution(executionArn=execution)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                raise ArtifactNotFound(execution) from exc
            raise UpstreamError(f"cannot describe {execution}: {exc}") from exc
        except BotoCoreError as exc:
            raise UpstreamError(f"cannot describe {execution}: {exc}") from exc
        output = json.loads(desc["output"]) if desc.get("output") else None
        return Execution(desc["status"], output, desc.get("error"), desc.get("cause"))
