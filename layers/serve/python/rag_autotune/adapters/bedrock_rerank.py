"""Reranking through plain boto3 `bedrock-agent-runtime` Rerank (Amazon Rerank 1.0, Cohere Rerank 3.5).
No wrapper library. Errors become RerankUnavailable with a reason; the caller answers in the unreranked order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from ..errors import RerankUnavailable

MAX_TEXT_CHARS = 32_000  # the API's limit on one query or document text
THROTTLING_CODES = frozenset({"ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException"})


def rerank_config(timeout_s: float) -> Config:
    """One attempt and short timeouts: a question must not wait on a slow reranker, and retrying a throttled
    call from every request would only feed the throttling; the unreranked order answers instead."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=min(1.0, timeout_s),
        read_timeout=timeout_s,
        tcp_keepalive=True,
        max_pool_connections=16,
    )


def region_of(model_arn: str) -> str:
    """arn:aws:bedrock:<region>::foundation-model/<id>: the Rerank API is called in the model's region."""
    return model_arn.split(":")[3]


class BedrockReranker:
    def __init__(self, client: Any, model_arn: str) -> None:
        self._client = client
        self._model_arn = model_arn

    @property
    def model(self) -> str | None:
        return self._model_arn

    def request(self, query: str, documents: Sequence[str]) -> dict[str, Any]:
        return {
            "queries": [{"type": "TEXT", "textQuery": {"text": query[:MAX_TEXT_CHARS]}}],
            "sources": [
                {"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": _text(d)}}}
                for d in documents
            ],
            "rerankingConfiguration": {
                "type": "BEDROCK_RERANKING_MODEL",
                "bedrockRerankingConfiguration": {
                    "modelConfiguration": {"modelArn": self._model_arn},
                    "numberOfResults": len(documents),
                },
            },
        }

    def rerank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        if not documents:
            return []  # the API refuses an empty source list; nothing to order
        try:
            response = self._client.rerank(**self.request(query, documents))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            reason = "throttled" if code in THROTTLING_CODES else "unavailable"
            raise RerankUnavailable(f"Bedrock rerank failed: {exc}", reason) from exc
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            raise RerankUnavailable(f"Bedrock rerank timed out: {exc}", "timeout") from exc
        except BotoCoreError as exc:
            raise RerankUnavailable(f"Bedrock rerank failed: {exc}", "unavailable") from exc
        return complete_order(response.get("results", []), len(documents))


def _text(document: str) -> str:
    # The API refuses an empty text; a chunk's title alone can be blank.
    return document[:MAX_TEXT_CHARS] or " "


def complete_order(results: Sequence[dict[str, Any]], n: int) -> list[tuple[int, float]]:
    """The service's results as a full permutation, most relevant first: an index it left out or repeated, or
    one out of range, cannot reorder what the caller shows; left-out documents follow in their own order."""
    seen: dict[int, float] = {}
    for r in results:
        i = r.get("index")
        if isinstance(i, int) and 0 <= i < n and i not in seen:
            seen[i] = float(r.get("relevanceScore", 0.0))
    order = sorted(seen.items(), key=lambda x: -x[1])
    floor = order[-1][1] if order else 0.0
    return order + [(i, floor) for i in range(n) if i not in seen]
