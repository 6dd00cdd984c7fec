"""Tune step 3c: build the candidate's index version from every shard's vector part (tune/fanout.py)."""

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
    state = fanout.assemble(RunState.from_event(event), store=rt.store, index=rt.index, now=time.time)
    return state.to_event()
