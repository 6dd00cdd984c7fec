"""Tune step 3: re-embed the live corpus with the candidate encoder into the shadow index version."""

import time
from typing import Any

from rag_autotune.observability import step_handler
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import steps
from rag_autotune.tune.state import RunState

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    state = steps.embed(
        RunState.from_event(event),
        store=rt.store,
        index=rt.index,
        load_encoder=rt.load_bulk_encoder,
        now=time.time,
        log=steps.progress_logger("embed"),
    )
    return state.to_event()
