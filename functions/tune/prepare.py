"""Tune step 1: take the run lock, gather votes, split train/held-out, name the candidate versions."""

from typing import Any

from rag_autotune.observability import logger, metrics
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import steps

rt = Runtime(get_settings())


@logger.inject_lambda_context(log_event=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.prepare(event, store=rt.store, feedback=rt.feedback, index=rt.index, settings=rt.settings)
