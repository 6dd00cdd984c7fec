"""Tune step 4: the gate. Live and candidate on the same queries; writes the run report."""

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
    state = steps.smoke(
        RunState.from_event(event),
        store=rt.store,
        index=rt.index,
        load_encoder=rt.load_encoder,
        settings=rt.settings,
        now=time.time,
        feedback=rt.feedback,
    )
    deltas = state.deltas or {}  # candidate − live nDCG@10 per query set, charted on the dashboard
    if "heldout" in deltas:
        metrics.add_metric(name="HeldoutNdcgDelta", unit=MetricUnit.NoUnit, value=deltas["heldout"])
    if "golden" in deltas:
        metrics.add_metric(name="GoldenNdcgDelta", unit=MetricUnit.NoUnit, value=deltas["golden"])
    if state.candidate_p99_ms is not None:
        metrics.add_metric(name="CandidateP99", unit=MetricUnit.Milliseconds, value=state.candidate_p99_ms)
    return state.to_event()
