"""Tune step 5: one conditional write of the manifest from the live pair to the candidate."""

from typing import Any

from rag_autotune.observability import logger, metrics
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import steps

rt = Runtime(get_settings())


@logger.inject_lambda_context(log_event=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.swap_step(event, store=rt.store, index=rt.index, settings=rt.settings)
