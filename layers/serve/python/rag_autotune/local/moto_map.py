"""A failed item fails moto's Distributed Map, as it fails AWS's.

moto 5.2.5's Distributed Map counts an item whose child workflow failed and goes on: the Map succeeds with a
null result for it. On AWS the Map Run fails once more items fail than ToleratedFailurePercentage/Count allow
(none by default) and the Map state fails with States.ExceedToleratedFailureThreshold, which a Catch routes.
`apply` makes a failed item end moto's Map Run with that error, in the process running moto's server. The
cause names the item's own error (AWS's cause does not: there the Map Run's console shows it), so the run's
failure reason says what went wrong. Failure tolerance is not modelled: any failed item fails the Map, which
is what the tune's ASL asks for (ToleratedFailurePercentage 0)."""

from __future__ import annotations

import json
from typing import Any

_applied = False
ERROR = "States.ExceedToleratedFailureThreshold"


def apply() -> None:
    global _applied
    if _applied:
        return
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as worker,
    )

    cls = worker.DistributedItemProcessorWorker
    cls._eval_job = _failing(cls._eval_job)  # type: ignore[method-assign]
    _applied = True


def _failing(orig: Any) -> Any:
    def eval_job(self: Any, env: Any, job: Any) -> None:
        from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
        from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
            FailureEvent,
            FailureEventException,
        )
        from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
        from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
            StatesErrorNameType,
        )
        from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
        from moto.stepfunctions.parser.asl.eval.program_state import ProgramError

        orig(self, env, job)
        state = env.program_state()
        if not isinstance(state, ProgramError):
            return
        failed = state.error or {}
        cause = f"map item {job.job_index} failed: {_error_text(failed.get('error'), failed.get('cause'))}"
        details = ExecutionFailedEventDetails(error=ERROR, cause=cause)
        job.job_output = FailureEventException(
            FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold),
                event_type=HistoryEventType.ExecutionFailed,
                event_details=EventDetails(executionFailedEventDetails=details),  # type: ignore[typeddict-item]  # moto builds it so
            )
        )

    return eval_job


def _error_text(error: str | None, cause: str | None) -> str:
    """ "Name: message"; a Lambda error's cause is JSON (errorType, errorMessage)."""
    try:
        lambda_error = json.loads(cause or "")
    except ValueError:
        lambda_error = None
    if isinstance(lambda_error, dict) and "errorType" in lambda_error:
        return f"{lambda_error['errorType']}: {lambda_error.get('errorMessage', '')}"
    return f"{error or 'Error'}: {cause or ''}"
