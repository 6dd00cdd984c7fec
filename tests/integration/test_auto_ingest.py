"""Drop-in auto-ingest over moto's server, on the stack template.yaml creates: objects put under docs/ (and one
deleted) → the bucket's EventBridge notifications → DocsRule → DocsQueue → the local stand-in for the event
source mapping → the ingest logic, as batches. The vector index and encoder are the in-memory fakes: the
path under test is S3 → EventBridge → SQS → one ingest per batch."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from rag_autotune.adapters.s3 import S3ArtifactStore
from rag_autotune.autoingest import handle_batch
from rag_autotune.local import cfn
from rag_autotune.local.queue_source import QueuePoller
from rag_autotune.settings import Settings
from rag_autotune.versions import read_manifest
from tests.fakes import HashEncoder, MemoryVectorIndex

N = 120  # more than one SQS receive (10 messages each), in one invocation; 500 passes too, in minutes


@pytest.fixture(scope="module")
def deployed(moto_url: str) -> tuple[cfn.LocalStack, Settings]:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(bucket=f"rag-auto-{suffix}", table=f"rag-auto-{suffix}")
    stack = cfn.deploy_stack(settings, stack_name=f"rag-auto-{suffix}", state_machine_name=f"rag-auto-{suffix}-tune")
    return stack, settings


def test_a_burst_of_uploads_becomes_one_ingest_and_a_delete_another(deployed: tuple[cfn.LocalStack, Settings]) -> None:
    stack, settings = deployed
    (source,) = stack.queue_sources
    assert source.function_name == stack.physical["IngestFunction"]
    assert (source.batch_size, source.window_s, source.report_failures) == (1000, 60.0, True)
    s3 = boto3.client("s3", region_name=settings.region)
    # (moto stores the bucket's EventBridge configuration but does not return it on GET: the events below
    # reaching the queue are the check)

    store = S3ArtifactStore(s3, settings.bucket)
    index = MemoryVectorIndex()
    store.put_bytes("models/v0/meta.json", b"{}")
    invocations: list[int] = []

    def deliver(event: dict[str, Any]) -> dict[str, Any]:
        invocations.append(len(event["Records"]))
        return handle_batch(
            event["Records"],
            store=store,
            index=index,
            load_encoder=HashEncoder,
            bucket=settings.bucket,
            prefix=settings.docs_prefix,
            retries=settings.ingest_retries,
        )

    sqs = boto3.client("sqs", region_name=settings.region)
    poller = QueuePoller(sqs, source, deliver, window_s=0)  # the queue holds the burst already: no waiting
    for i in range(N):
        s3.put_object(Bucket=settings.bucket, Key=f"docs/page{i}.md", Body=f"# Page {i}\n\nAbout topic {i}.".encode())
    s3.put_object(Bucket=settings.bucket, Key="elsewhere/not-a-doc.md", Body=b"# no")  # the rule filters it out

    assert poller.drain() == [[]]  # one batch, no failed message
    assert invocations == [N]
    manifest = read_manifest(store)
    assert manifest is not None
    first = manifest[0].live.index_version
    assert index.versions() == [first]
    assert {c.doc_id for c in index.chunks(first)} == {f"page{i}.md" for i in range(N)}

    s3.delete_object(Bucket=settings.bucket, Key="docs/page7.md")
    s3.put_object(Bucket=settings.bucket, Key="docs/page8.md", Body=b"# Page 8\n\nRewritten about something else.")
    assert poller.drain() == [[]]
    assert invocations == [N, 2]
    manifest = read_manifest(store)
    assert manifest is not None
    second = manifest[0].live.index_version
    assert index.versions() == sorted([first, second])
    chunks = list(index.chunks(second))
    assert {c.doc_id for c in chunks} == {f"page{i}.md" for i in range(N)} - {"page7.md"}
    assert [c.text for c in chunks if c.doc_id == "page8.md"] == ["Rewritten about something else."]  # its new text
    assert poller.drain() == []  # every message was deleted
