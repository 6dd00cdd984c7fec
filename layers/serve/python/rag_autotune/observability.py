"""Logger, metrics and tracer, created once, and the decorators every handler uses. Configured by POWERTOOLS_*
variables (template.yaml Globals); the defaults below apply where those are not set (local runs, tests)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "rag-autotune")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "RagAutotune")

from aws_lambda_powertools import Logger, Metrics, Tracer  # noqa: E402 (after the defaults above)

logger = Logger()
metrics = Metrics()
tracer = Tracer()
from aws_lambda_powertools.metrics import MetricUnit  # noqa: E402

_cold = True


def step_handler(
    fn: Callable[[dict[str, Any], Any], dict[str, Any]],
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A tune step's Lambda handler: JSON logs with the Lambda context and the event, an X-Ray segment, and
    its EMF metrics (plus Powertools' ColdStart metric) flushed when it returns."""
    return logger.inject_lambda_context(log_event=True)(
        metrics.log_metrics(capture_cold_start_metric=True)(tracer.capture_lambda_handler(fn))
    )


def api_request_started(request_id: str | None) -> None:
    """Per API request (the Chalice app is the handler, so Powertools' decorators can't wrap it): the API
    Gateway request id becomes the logs' correlation id, and the first request of a process counts a cold start."""
    global _cold
    logger.set_correlation_id(request_id)
    if _cold:
        _cold = False
        metrics.add_metric(name="ColdStart", unit=MetricUnit.Count, value=1)
