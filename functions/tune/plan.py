"""Tune step 3a: write the live corpus as chunk shards and the item list the embed Map reads (tune/fanout.py)."""

import time
from typing import Any

from rag_autotune.observability import step_handler
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import fanout
from rag_autotune.tune.state import RunState

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    state = fanout.plan(
        RunState.from_event(event),
        store=rt.store,
        index=rt.index,
        settings=rt.settings,
        now=time.time,
        load_encoder=rt.load_encoder,  # only when the index takes parts: the version's dim is the encoder's
    )
    return state.to_event()
