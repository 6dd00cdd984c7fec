"""Tune step 3b, one item of the embed Map: embed one chunk shard with the candidate encoder into its vector
part, or straight into the candidate's collection on a Qdrant server (tune/fanout.py)."""

import time
from typing import Any

from rag_autotune.observability import step_handler
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import fanout
from rag_autotune.tune.state import ShardTask

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    task = ShardTask.from_event(event)
    return fanout.embed_shard(task, store=rt.store, load_encoder=rt.load_bulk_encoder, now=time.time, index=rt.index)
