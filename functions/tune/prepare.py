"""Tune step 1: take the run lock, gather votes, split train/held-out, name the candidate versions."""

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from rag_autotune.observability import metrics, step_handler
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import steps
from rag_autotune.tune.state import RunStart

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    state = steps.prepare(
        RunStart.from_event(event),
        store=rt.store,
        feedback=rt.feedback,
        index=rt.index,
        settings=rt.settings,
        now=time.time,
        load_encoder=rt.load_encoder,  # loaded only when mined negatives are on
    )
    if state.status == "SKIPPED":  # a run outcome on the dashboard (template.yaml)
        metrics.add_metric(name="TuneSkipped", unit=MetricUnit.Count, value=1)
    return state.to_event()
