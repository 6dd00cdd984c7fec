"""Stand-ins for the embed Map's function in the ingest fan-out tests, mapped over the real handler by the local
Lambda runner: the real map item (tune.fanout.embed_shard, which hands an ingest job to ingest_fanout), with the
fakes' HashEncoder instead of an ONNX model. `embed_failing_shard_1` writes half a part for shard 1 and raises."""

from __future__ import annotations

import time
from typing import Any

from rag_autotune.errors import UpstreamError
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import fanout
from rag_autotune.tune.state import ShardTask
from tests.fakes import HashEncoder


def embed(event: dict[str, Any], context: Any) -> dict[str, Any]:
    rt = Runtime(get_settings())
    return fanout.embed_shard(ShardTask.from_event(event), store=rt.store, load_encoder=HashEncoder, now=time.time)


def embed_failing_shard_1(event: dict[str, Any], context: Any) -> dict[str, Any]:
    task = ShardTask.from_event(event)
    if task.item.index == 1:
        Runtime(get_settings()).store.put_bytes(task.item.part, b"half a part")
        raise UpstreamError("shard 1 cannot reach S3")
    return embed(event, context)
