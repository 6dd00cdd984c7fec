"""Catch/Reject target: remove the run's shadow model and index, record FAILED or REJECTED, release the lock."""

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from rag_autotune.observability import metrics, step_handler
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import steps
from rag_autotune.tune.state import CleanupEvent

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    outcome = steps.cleanup(CleanupEvent.from_event(event), store=rt.store, index=rt.index, now=time.time)
    # TuneRejected or TuneFailed: a run outcome on the dashboard (template.yaml)
    metrics.add_metric(name=f"Tune{outcome.status.title()}", unit=MetricUnit.Count, value=1)
    return outcome.to_event()
