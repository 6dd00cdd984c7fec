"""The API key check: the header API Gateway uses (x-api-key), compared in constant time.

On AWS, API Gateway checks the key (usage plan) before the Lambda runs; the embedded default has no gateway,
so the app checks it when RAG_AUTOTUNE_API_KEY is set. Both run the same code: with no key configured the
check passes. Messages never echo the key that was presented."""

from __future__ import annotations

import hashlib
import hmac

from .errors import InvalidApiKey, MissingApiKey

HEADER = "x-api-key"


def _digest(value: str) -> bytes:
    # Hashing first makes the comparison independent of both lengths; surrogatepass: event JSON may hold anything.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class ApiKeyCheck:
    def __init__(self, expected: str | None) -> None:
        self._expected = _digest(expected) if expected else None

    @property
    def required(self) -> bool:
        return self._expected is not None

    def check(self, presented: str | None) -> None:
        if self._expected is None:
            return
        if not presented:
            raise MissingApiKey(f"this API needs an API key in the {HEADER} header")
        if not hmac.compare_digest(_digest(presented), self._expected):
            raise InvalidApiKey("the API key is not valid")


def key_fingerprint(presented: str) -> str:
    """A short, stable stand-in for a key (rate-limit buckets): the key itself is never kept or logged."""
    return hashlib.sha256(presented.encode("utf-8", "surrogatepass")).hexdigest()[:16]
