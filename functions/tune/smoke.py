"""Tune step 4: the gate. Live and candidate on the same queries; writes the run report."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from rag_autotune.observability import metrics, step_handler
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import steps

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result = steps.smoke(
        event, store=rt.store, index=rt.index, load_encoder=rt.load_encoder, settings=rt.settings, feedback=rt.feedback
    )
    deltas = result["deltas"]  # candidate − live nDCG@10 per query set, charted on the dashboard
    if "heldout" in deltas:
        metrics.add_metric(name="HeldoutNdcgDelta", unit=MetricUnit.NoUnit, value=deltas["heldout"])
    if "golden" in deltas:
        metrics.add_metric(name="GoldenNdcgDelta", unit=MetricUnit.NoUnit, value=deltas["golden"])
    metrics.add_metric(name="CandidateP99", unit=MetricUnit.Milliseconds, value=result["candidate_p99_ms"])
    return result
