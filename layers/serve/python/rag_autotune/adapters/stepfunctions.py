"""Starting and watching the tune state machine (AWS, LocalStack or the embedded moto server alike)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import NotReady, UpstreamError

STATE_MACHINE_NAME = "rag-autotune-tune"


class TuneLauncher:
    def __init__(self, client: Any, state_machine_arn: str | None = None) -> None:
        self._sfn = client
        self._arn = state_machine_arn

    def state_machine_arn(self) -> str:
        if self._arn:
            return self._arn
        try:
            for page in self._sfn.get_paginator("list_state_machines").paginate():
                for sm in page["stateMachines"]:
                    if sm["name"] == STATE_MACHINE_NAME:
                        self._arn = str(sm["stateMachineArn"])
                        return self._arn
        except (ClientError, BotoCoreError) as exc:
            raise UpstreamError(f"cannot list state machines: {exc}") from exc
        raise NotReady(
            f"no state machine named {STATE_MACHINE_NAME}: deploy the stack (or run `make run`), "
            "or set RAG_STATE_MACHINE_ARN"
        )

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
