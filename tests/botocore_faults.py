"""Inject a service error into one boto3 client, as the service's own HTTP answer: a `before-send` hook returns
the response instead of sending the request, so botocore parses it and its retry mode handles it for real."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSResponse


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


class Inject:
    """Answers the next `times` calls of one operation with a DynamoDB error, as the service would send it.
    Used as a context manager; calls counts every attempt botocore made, retries included."""

    def __init__(self, client: Any, operation: str, code: str, times: int, status: int = 400, **extra: Any) -> None:
        self.client, self.event = client, f"before-send.dynamodb.{operation}"
        self.code, self.times, self.status, self.extra = code, times, status, extra
        self.calls = 0

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        self.calls += 1
        if self.calls > self.times:
            return None  # let it through to moto
        body = {"__type": f"com.amazonaws.dynamodb.v20120810#{self.code}", "message": "Rate of requests exceeded"}
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": f"inject-{self.calls}"}
        return AWSResponse(request.url, self.status, headers, _Raw(json.dumps({**body, **self.extra}).encode()))

    def __enter__(self) -> Inject:
        self.client.meta.events.register_first(self.event, self, unique_id=f"inject-{id(self)}")
        return self

    def __exit__(self, *_: object) -> None:
        self.client.meta.events.unregister(self.event, unique_id=f"inject-{id(self)}")
