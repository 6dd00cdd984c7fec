"""Ingest fan-out, after any failure: the job's version (unless it went live) and jobs/<id>/ deleted
(ingest_fanout.py)."""

from typing import Any

from rag_autotune.ingest_fanout import IngestJob, cleanup_job
from rag_autotune.observability import step_handler
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    job = IngestJob.from_event(event.get("run") or {})
    return cleanup_job(job, event.get("error"), store=rt.store, index=rt.index)
