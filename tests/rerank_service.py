"""Bedrock's Rerank API played on this machine: a `before-send` hook answers a real boto3 `bedrock-agent-runtime`
client as the service would (HTTP status, JSON body), so botocore serialises the request and parses the answer
for real. Nothing emulates Rerank locally; relevance here is word overlap, enough to order on purpose."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config

REGION = "us-west-2"
MODEL_ARN = f"arn:aws:bedrock:{REGION}::foundation-model/amazon.rerank-v1:0"
ENDPOINT = f"https://bedrock-agent-runtime.{REGION}.amazonaws.com"


def rerank_client(config: Config | None = None) -> Any:
    return boto3.client(
        "bedrock-agent-runtime",
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        endpoint_url=ENDPOINT,
        config=config,
    )


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


class RerankService:
    """Register on a client (`with RerankService(client):`); `requests` keeps every request body it answered."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        body = json.loads(request.body)
        self.requests.append(body)
        query = body["queries"][0]["textQuery"]["text"]
        texts = [s["inlineDocumentSource"]["textDocument"]["text"] for s in body["sources"]]
        if not 1 <= len(query) <= 32_000 or any(not 1 <= len(t) <= 32_000 for t in texts):
            return self._answer(400, {"message": "text length out of range"}, "ValidationException")
        q = _words(query)
        scores = [len(q & _words(t)) / (1 + len(_words(t))) for t in texts]
        ranked = sorted(range(len(texts)), key=lambda i: -scores[i])
        limit = body["rerankingConfiguration"]["bedrockRerankingConfiguration"].get("numberOfResults", len(texts))
        return self._answer(200, {"results": [{"index": i, "relevanceScore": scores[i]} for i in ranked[:limit]]})

    def _answer(self, status: int, payload: dict[str, Any], error: str | None = None) -> AWSResponse:
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": f"fake-{len(self.requests)}"}
        if error:
            headers["x-amzn-ErrorType"] = error
        return AWSResponse(ENDPOINT + "/rerank", status, headers, _Raw(json.dumps(payload).encode()))

    def __enter__(self) -> RerankService:
        self.client.meta.events.register_first("before-send.bedrock-agent-runtime.Rerank", self, unique_id="rerank")
        return self

    def __exit__(self, *_: object) -> None:
        self.client.meta.events.unregister("before-send.bedrock-agent-runtime.Rerank", unique_id="rerank")
