"""Tune step 2 (container image: needs torch): LoRA on the live encoder, merge, ONNX int8, parity, upload vN."""

import time
from typing import Any

from rag_autotune.observability import step_handler
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import train_step
from rag_autotune.tune.state import RunState

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return train_step.train(RunState.from_event(event), store=rt.store, settings=rt.settings, now=time.time).to_event()
