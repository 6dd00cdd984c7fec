"""Domain exceptions. Logic raises these; api/http_errors.py maps them to HTTP; the ASL Catch routes on names."""

from __future__ import annotations


class RagError(Exception):
    """Base of every error this project raises on purpose."""

    code = "error"


class InvalidInput(RagError):
    code = "invalid_input"


class InvalidJson(InvalidInput):
    code = "invalid_json"


class UnknownQuery(RagError):
    code = "unknown_query"


class DocNotCited(RagError):
    code = "doc_not_cited"


class NotReady(RagError):
    """No live model/index pair yet (run `rag-autotune bootstrap` and `ingest`)."""

    code = "not_ready"


class ArtifactNotFound(RagError):
    code = "artifact_not_found"


class ConflictError(RagError):
    """A conditional write lost: somebody else moved the pointer first."""

    code = "conflict"


class CorruptArtifact(RagError):
    code = "corrupt_artifact"


class IncompleteVersion(RagError):
    """An index version written in parts does not hold the points its plan counts: it stays unsealed."""

    code = "incomplete_version"


class IngestError(RagError):
    code = "ingest_error"


class UpstreamError(RagError):
    """A dependency (Bedrock, S3, DynamoDB) failed in a way the caller cannot fix."""

    code = "upstream_error"


class RerankUnavailable(UpstreamError):
    """The reranking model did not answer. Never reaches a client: /ask answers in the unreranked order."""

    code = "rerank_unavailable"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # throttled, timeout or unavailable: what the /ask answer reports


class EndpointUnreachable(UpstreamError):
    """Nothing answers at the configured AWS endpoint on this machine (the local stack is not running)."""

    code = "endpoint_unreachable"


class RetryLater(RagError):
    """Mixin for errors that tell the client when to try again (the HTTP answer carries Retry-After)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Throttled(RetryLater, UpstreamError):
    """DynamoDB still throttled after botocore's retries: nothing was written; the client should retry."""

    code = "throttled"


class MissingApiKey(RagError):
    """An API key is configured and the request carried none (header x-api-key)."""

    code = "missing_api_key"


class InvalidApiKey(RagError):
    code = "invalid_api_key"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class RateLimited(RetryLater):
    """This client sent more requests than its token bucket allows."""

    code = "rate_limited"
