"""Fault-injecting stand-ins for tune steps, mapped over the real handlers by the local Lambda runner."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rag_autotune.errors import RagError, UpstreamError
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings
from rag_autotune.tune import fanout, steps
from rag_autotune.tune.runs import RunLocked, acquire_lock
from rag_autotune.tune.state import RunStart, RunState, ShardTask


class EmbedCrashed(RagError):
    code = "embed_crashed"


def embed_then_raise(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One map item leaves half a part and half a shadow index behind, then dies, as a Lambda killed mid-embed
    would; so do its retries."""
    rt = Runtime(get_settings())
    task = ShardTask.from_event(event)
    rt.store.put_bytes(task.item.part, b"half a part")
    rt.store.put_bytes(f"indexes/{task.run.shadow.index_version}/shard.tar", b"half a shard")
    raise EmbedCrashed("disk full while embedding")


FAULTY_SHARD = 1  # the map item that fails, every time it is tried


def one_shard_always_fails(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The real map item, except shard FAULTY_SHARD, which writes half its part and raises (a retryable
    UpstreamError: the item's Retry runs it again, and it fails again)."""
    rt = Runtime(get_settings())
    task = ShardTask.from_event(event)
    if task.item.index == FAULTY_SHARD:
        rt.store.put_bytes(task.item.part, b"half a part")
        raise UpstreamError(f"shard {task.item.index}: S3 reset the connection")
    return fanout.embed_shard(task, store=rt.store, load_encoder=rt.load_bulk_encoder, now=time.time)


def assemble_then_corrupt(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The real Assemble, then the candidate's model.onnx is damaged in storage before the gate runs."""
    rt = Runtime(get_settings())
    state = RunState.from_event(event)
    out = fanout.assemble(state, store=rt.store, index=rt.index, now=time.time)
    key = f"models/{state.shadow.model_version}/model.onnx"
    data = bytearray(rt.store.get_bytes(key))
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # bit rot in the middle of the weights
    rt.store.put_bytes(key, bytes(data))
    return out.to_event()


GO_KEY = "tests/go.json"  # written by the test when the run holding the lock may go on


def eventually(predicate: Callable[[], bool], timeout_s: float = 300.0, poll_s: float = 0.05) -> bool:
    """Wait for a state another process makes (a key in S3): no outcome hangs on the wait's length, which only
    bounds how long a broken run may hang the test."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(poll_s)
    return True


def prepare_holding_the_lock(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The real Prepare, after taking the lock and holding it until the test writes GO_KEY: a second start
    overlaps this run for certain, however fast or slow the machine."""
    rt = Runtime(get_settings())
    try:
        acquire_lock(rt.store, str(event["run_id"]), time.time())  # Prepare takes it again: the same run may
    except RunLocked:
        pass  # the other start holds it: the real Prepare records the refusal and raises
    else:
        if not eventually(lambda: rt.store.head_etag(GO_KEY) is not None):
            raise TimeoutError(f"{GO_KEY} never appeared")
    start = RunStart.from_event(event)
    state = steps.prepare(
        start, store=rt.store, feedback=rt.feedback, index=rt.index, settings=rt.settings, now=time.time
    )
    return state.to_event()


def copy_train(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Stand in for training (these tests are about later steps): the candidate is a copy of the live model."""
    rt = Runtime(get_settings())
    state = RunState.from_event(event)
    live, cand = state.live.model_version, state.shadow.model_version
    for name in ("model.onnx", "tokenizer.json", "meta.json"):  # meta.json last, as the real step does
        rt.store.put_bytes(f"models/{cand}/{name}", rt.store.get_bytes(f"models/{live}/{name}"))
    return state.to_event()


# -- S3 outages: from the (n+1)th write on, this process cannot reach S3 (every retry and every re-invocation
# of the step too, since each attempt is a fresh process that counts again). Cleanup runs in its own process,
# where S3 is back, as it would be for an outage that lasts minutes.

_WRITES = ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "CopyObject")


def _s3_writes_fail_after(rt: Runtime, allowed: int) -> None:
    from botocore.exceptions import EndpointConnectionError

    from rag_autotune.adapters.aws import make_client

    client = make_client("s3", rt.settings.region)  # the shared client every adapter in this process uses
    seen = [0]

    def outage(request: Any, **_: Any) -> None:
        seen[0] += 1
        if seen[0] > allowed:
            raise EndpointConnectionError(endpoint_url=request.url)

    for op in _WRITES:
        client.meta.events.register_first(f"before-send.s3.{op}", outage)


def train_with_s3_outage(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Training 'done', the upload of the new model dies halfway: model.onnx written, the rest never."""
    rt = Runtime(get_settings())
    _s3_writes_fail_after(rt, allowed=1)
    return copy_train(event, context)


def embed_with_s3_outage(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The real map item, with S3 gone by the time its vector part is uploaded."""
    rt = Runtime(get_settings())
    _s3_writes_fail_after(rt, allowed=0)
    task = ShardTask.from_event(event)
    return fanout.embed_shard(task, store=rt.store, load_encoder=rt.load_bulk_encoder, now=time.time)


def swap_with_s3_outage(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The real swap, with S3 gone at the manifest's conditional write."""
    rt = Runtime(get_settings())
    _s3_writes_fail_after(rt, allowed=0)
    state = steps.swap_step(
        RunState.from_event(event), store=rt.store, index=rt.index, settings=rt.settings, now=time.time
    )
    return state.to_event()
