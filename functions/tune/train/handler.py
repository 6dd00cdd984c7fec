"""Tune step 2 (container image: needs torch): LoRA on the live encoder, merge, ONNX int8, parity, upload vN."""

import time
from typing import Any

from rag_autotune.observability import step_handler
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import train_step
from rag_autotune.tune.budget import train_budget_s
from rag_autotune.tune.state import RunState

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    budget_s = train_budget_s(rt.settings.tune_train_budget_s, context.get_remaining_time_in_millis() / 1000)
    state = RunState.from_event(event)
    return train_step.train(state, store=rt.store, settings=rt.settings, now=time.time, budget_s=budget_s).to_event()
