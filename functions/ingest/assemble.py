"""Ingest fan-out, after the embed Map: the new index version from the parts and the live version's vectors,
then the conditional manifest write (ingest_fanout.py)."""

from typing import Any

from rag_autotune.ingest_fanout import IngestJob, assemble_job
from rag_autotune.observability import step_handler
from rag_autotune.runtime import Runtime
from rag_autotune.settings import get_settings

rt = Runtime(get_settings())


@step_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return assemble_job(IngestJob.from_event(event), store=rt.store, index=rt.index)
