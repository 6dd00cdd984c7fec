"""Bedrock is the one service nothing local emulates: the request shape is checked with botocore's Stubber."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from rag_autotune.adapters.bedrock import SYSTEM_PROMPT, BedrockGenerator, build_prompt
from rag_autotune.errors import UpstreamError
from rag_autotune.generate import Passage

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
PASSAGES = [Passage(1, "pipe(2)", "pipe() creates a pipe."), Passage(2, "open(2)", "open() opens a file.")]


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com",
    )


def test_converse_request_carries_passages_and_citation_instructions(client: Any) -> None:
    expected = {
        "modelId": MODEL,
        "system": [{"text": SYSTEM_PROMPT}],
        "messages": [{"role": "user", "content": [{"text": build_prompt("make a pipe", PASSAGES)}]}],
        "inferenceConfig": {"maxTokens": 512, "temperature": 0.2},
    }
    response = {
        "output": {"message": {"role": "assistant", "content": [{"text": "Use pipe() [1]."}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 50, "outputTokens": 6, "totalTokens": 56},
        "metrics": {"latencyMs": 120},
    }
    with Stubber(client) as stub:
        stub.add_response("converse", response, expected)
        assert BedrockGenerator(client, MODEL).answer("make a pipe", PASSAGES) == "Use pipe() [1]."
        stub.assert_no_pending_responses()
    prompt = build_prompt("make a pipe", PASSAGES)
    assert "[1] pipe(2)\npipe() creates a pipe." in prompt and "[2] open(2)" in prompt
    assert prompt.endswith("Question: make a pipe")


def test_bedrock_errors_become_upstream_errors(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("converse", "ThrottlingException", "slow down", 429)
        with pytest.raises(UpstreamError, match="slow down"):
            BedrockGenerator(client, MODEL).answer("q", PASSAGES)


def test_stream_yields_converse_stream_text_deltas() -> None:
    """converse_stream returns an event stream, which Stubber cannot build; a client double stands in."""

    class StreamingClient:
        def __init__(self) -> None:
            self.request: dict[str, Any] = {}

        def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
            self.request = kwargs
            return {
                "stream": iter(
                    [
                        {"messageStart": {"role": "assistant"}},
                        {"contentBlockDelta": {"delta": {"text": "Use "}, "contentBlockIndex": 0}},
                        {"contentBlockDelta": {"delta": {"text": "pipe() [1]."}, "contentBlockIndex": 0}},
                        {"messageStop": {"stopReason": "end_turn"}},
                    ]
                )
            }

    fake = StreamingClient()
    deltas = list(BedrockGenerator(fake, MODEL).stream("make a pipe", PASSAGES))
    assert deltas == ["Use ", "pipe() [1]."]
    assert fake.request["modelId"] == MODEL and fake.request["system"] == [{"text": SYSTEM_PROMPT}]
