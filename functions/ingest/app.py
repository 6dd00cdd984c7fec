"""Auto-ingest: S3 events for docs/, batched by SQS, become one incremental ingest per batch (partial batch
response: the messages of a batch that could not be applied are delivered again). A batch with more chunks to
embed than one shard fans out through the ingest state machine; this waits for it within its own timeout."""

from typing import Any

from rag_autotune.autoingest import handle_batch
from rag_autotune.observability import logger, step_handler
from rag_autotune.readers import ReadLimits
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings

rt = Runtime(get_settings())


# What the invocation keeps for itself after waiting for a fanned-out ingest: reporting the batch.
MARGIN_S = 30.0


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    s = rt.settings
    wait_s = max(context.get_remaining_time_in_millis() / 1000 - MARGIN_S, 0.0)
    return handle_batch(
        event.get("Records") or [],
        store=rt.store,
        index=rt.index,
        load_encoder=rt.load_bulk_encoder,
        bucket=s.bucket,
        prefix=s.docs_prefix,
        retries=s.ingest_retries,
        chunk_chars=s.chunk_chars,
        chunk_overlap=s.chunk_overlap,
        keep=s.tune_retention,
        limits=ReadLimits.from_settings(s),
        log=logger.info,
        fan_out=rt.ingest_fan_out(wait_s=wait_s),
    )
