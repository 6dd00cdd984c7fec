"""Auto-ingest: S3 events for docs/, batched by SQS, become one incremental ingest per batch (partial batch
response: the messages of a batch that could not be applied are delivered again)."""

from typing import Any

from rag_autotune.autoingest import handle_batch
from rag_autotune.observability import logger, step_handler
from rag_autotune.readers import ReadLimits
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    s = rt.settings
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
    )
