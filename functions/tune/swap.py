"""Tune step 5: one conditional write of the manifest from the live pair to the candidate."""

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from rag_autotune.observability import metrics, step_handler
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import steps
from rag_autotune.tune.state import RunState

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    state = steps.swap_step(
        RunState.from_event(event), store=rt.store, index=rt.index, settings=rt.settings, now=time.time
    )
    metrics.add_metric(name="TuneSwapped", unit=MetricUnit.Count, value=1)  # a run outcome on the dashboard
    return state.to_event()
