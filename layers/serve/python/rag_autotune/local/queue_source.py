"""A stand-in for Lambda's SQS event source mapping, which moto would run inside the request that sent the
message, once per message (cfn.py takes the mappings out of the stack; this delivers them).

Like the mapping: receive up to `batch_size` messages, waiting at most `window_s` after the first; invoke the
function once with all of them as one SQS event; delete the messages that did not fail (the partial batch
response's `batchItemFailures`, or every message when the function raised) and make the failed ones visible
again, so they are delivered again (and reach the queue's dead-letter queue after its maxReceiveCount).
`QueuePoller(...).start()` polls on a daemon thread until `.stop()`; `drain()` delivers what is queued now."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from botocore.config import Config

from ..adapters import aws
from .background import BackgroundLoop
from .cfn import QueueSource

LOG = logging.getLogger(__name__)

Deliver = Callable[[dict[str, Any]], dict[str, Any] | None]  # SQS event → the function's response (None: raised)
_RECEIVE_MAX = 10  # SQS returns at most 10 messages per ReceiveMessage


def lambda_deliver(lam: Any, function_name: str) -> Deliver:
    """Deliver through Lambda Invoke (the local runner runs the handler file in its own process)."""

    def deliver(event: dict[str, Any]) -> dict[str, Any] | None:
        reply = lam.invoke(FunctionName=function_name, Payload=json.dumps(event).encode())
        body = reply["Payload"].read()
        if reply.get("FunctionError"):
            LOG.error("%s failed on a batch of %d: %s", function_name, len(event["Records"]), body[:2000])
            return None
        out = json.loads(body or b"null")
        return out if isinstance(out, dict) else {}

    return deliver


class QueuePoller(BackgroundLoop):
    THREAD_NAME = "rag-autotune-queue-source"

    def __init__(
        self,
        sqs: Any,
        source: QueueSource,
        deliver: Deliver,
        *,
        queue_arn: str = "",
        window_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        idle_wait_s: int = 5,
    ) -> None:
        self._sqs = sqs
        self.source = source
        self._deliver = deliver
        self._arn = (
            queue_arn
            or sqs.get_queue_attributes(QueueUrl=source.queue_url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
        )
        self._window_s = source.window_s if window_s is None else window_s
        self._clock = clock
        self._idle_wait_s = idle_wait_s  # long poll while the queue is empty
        super().__init__()
        self.batches = 0

    def _receive(self, most: int, wait_s: int) -> list[dict[str, Any]]:
        reply = self._sqs.receive_message(
            QueueUrl=self.source.queue_url,
            MaxNumberOfMessages=max(1, min(_RECEIVE_MAX, most)),
            WaitTimeSeconds=max(0, min(20, wait_s)),
            AttributeNames=["All"],
        )
        return list(reply.get("Messages", []))

    def collect(self, first_wait_s: int = 0) -> list[dict[str, Any]]:
        """One batch: up to batch_size messages, gathered for at most window_s after the first arrived."""
        batch = self._receive(self.source.batch_size, first_wait_s)
        if not batch:
            return []
        deadline = self._clock() + self._window_s
        while len(batch) < self.source.batch_size and not self._stop.is_set():
            left = deadline - self._clock()
            more = self._receive(self.source.batch_size - len(batch), int(left) if left >= 1 else 0)
            batch += more
            if not more and left <= 0:
                break
        return batch

    def deliver_batch(self, messages: list[dict[str, Any]]) -> list[str]:
        """Invoke once with `messages`; returns the ids of the messages that failed (left on the queue)."""
        event = {"Records": [self._record(m) for m in messages]}
        response = self._deliver(event)
        self.batches += 1
        if response is None:
            failed = {m["MessageId"] for m in messages}
        elif self.source.report_failures:
            failed = {str(f.get("itemIdentifier")) for f in response.get("batchItemFailures") or []}
        else:
            failed = set()
        for m in messages:
            if m["MessageId"] in failed:
                self._sqs.change_message_visibility(
                    QueueUrl=self.source.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self._sqs.delete_message(QueueUrl=self.source.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return sorted(failed)

    def drain(self, max_batches: int = 100) -> list[list[str]]:
        """Deliver every message queued now, batch by batch; returns each batch's failed message ids."""
        results = []
        for _ in range(max_batches):
            batch = self.collect()
            if not batch:
                break
            results.append(self.deliver_batch(batch))
        return results

    def _record(self, m: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self._arn,
            "awsRegion": self._arn.split(":")[3] if self._arn.count(":") >= 3 else "",
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.collect(first_wait_s=self._idle_wait_s)
                if batch:
                    self.deliver_batch(batch)
            except Exception:
                LOG.exception("delivering a batch from %s failed", self.source.queue_url)
                self._stop.wait(self._idle_wait_s)


def start_pollers(sources: list[QueueSource], region: str) -> list[QueuePoller]:
    """A running poller per event source, invoking its function through the local Lambda runner."""
    session = aws.session(region)
    sqs = session.client("sqs")
    # An invocation lasts as long as its ingest: up to the function's timeout, not botocore's 60 s.
    lam = session.client("lambda", config=Config(read_timeout=900, retries={"max_attempts": 0}))
    return [QueuePoller(sqs, s, lambda_deliver(lam, s.function_name)).start() for s in sources]
