"""Bedrock generation through plain boto3 `bedrock-runtime` Converse / ConverseStream. No wrapper library."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import UpstreamError
from ..generate import Passage

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages given. Cite every claim with the passage "
    "number in square brackets, like [1] or [2][3]. If the passages do not contain the answer, say so in one "
    "sentence. Be concise: at most five sentences."
)


def build_prompt(query: str, passages: Sequence[Passage]) -> str:
    blocks = "\n\n".join(f"[{p.n}] {p.title}\n{p.text}" for p in passages)
    return f"Passages:\n\n{blocks}\n\nQuestion: {query}"


class BedrockGenerator:
    def __init__(self, client: Any, model_id: str, max_tokens: int = 512, temperature: float = 0.2) -> None:
        self._client = client
        self._model_id = model_id
        self._inference = {"maxTokens": max_tokens, "temperature": temperature}

    def _request(self, query: str, passages: Sequence[Passage]) -> dict[str, Any]:
        return {
            "modelId": self._model_id,
            "system": [{"text": SYSTEM_PROMPT}],
            "messages": [{"role": "user", "content": [{"text": build_prompt(query, passages)}]}],
            "inferenceConfig": self._inference,
        }

    def answer(self, query: str, passages: Sequence[Passage]) -> str:
        try:
            response = self._client.converse(**self._request(query, passages))
        except (ClientError, BotoCoreError) as exc:
            raise UpstreamError(f"Bedrock converse failed: {exc}") from exc
        content = response["output"]["message"]["content"]
        return "".join(block.get("text", "") for block in content).strip()

    def stream(self, query: str, passages: Sequence[Passage]) -> Iterator[str]:
        try:
            response = self._client.converse_stream(**self._request(query, passages))
            for event in response["stream"]:
                delta = event.get("contentBlockDelta", {}).get("delta", {})
                if "text" in delta:
                    yield delta["text"]
        except (ClientError, BotoCoreError) as exc:
            raise UpstreamError(f"Bedrock converse_stream failed: {exc}") from exc
