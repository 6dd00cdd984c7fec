"""Tune step 3: re-embed the live corpus with the candidate encoder into the shadow index version."""

from typing import Any

from rag_autotune.observability import step_handler
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import steps

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return steps.embed(
        event, store=rt.store, index=rt.index, load_encoder=rt.load_bulk_encoder, log=steps.progress_logger("embed")
    )
