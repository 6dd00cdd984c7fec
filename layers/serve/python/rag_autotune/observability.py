"""Logger, metrics and tracer, created once, and the decorators every handler uses. Configured by POWERTOOLS_*
variables (template.yaml Globals); the defaults below apply where those are not set (local runs, tests)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "rag-autotune")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "RagAutotune")

from aws_lambda_powertools import Logger, Metrics, Tracer  # noqa: E402 (after the defaults above)
from aws_lambda_powertools.metrics import MetricUnit  # noqa: E402
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment  # noqa: E402


class _Untraced(BaseSegment):
    def close(self, end_time: int | None = None) -> None: ...
    def add_subsegment(self, subsegment: Any) -> None: ...
    def remove_subsegment(self, subsegment: Any) -> None: ...
    def put_annotation(self, key: str, value: Any) -> None: ...
    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...
    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None: ...


class _NoTracing(BaseProvider):
    """The tracer's provider outside Lambda, where nothing collects traces. Powertools' default provider is the
    X-Ray SDK, and importing it builds a boto3 X-Ray client: with AWS_PROFILE naming a profile that does not exist
    (or a broken config), every command would fail at import, `rag-autotune --help` included."""

    @contextlib.contextmanager
    def in_subsegment(self, name: Any = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield _Untraced()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: Any = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        yield _Untraced()

    def put_annotation(self, key: str, value: Any) -> None: ...
    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...
    def patch(self, modules: Sequence[str]) -> None: ...
    def patch_all(self) -> None: ...


def _on_lambda() -> bool:
    return bool(os.environ.get("LAMBDA_TASK_ROOT"))  # set by the Lambda runtime, in the cloud and its emulators


logger = Logger()
metrics = Metrics()
tracer = Tracer(provider=None if _on_lambda() else _NoTracing())  # None: Powertools' X-Ray provider

_cold = True
# Powertools keeps one metric set per process. On Lambda a process serves one request at a time; the local API
# server runs concurrent requests on threads of one process, and a flush while another thread adds a metric
# fails ("Must contain at least one metric", or a dict changed during iteration). The API's metric calls
# go through these two functions.
_api_metrics = threading.Lock()


def add_api_metric(name: str, unit: MetricUnit, value: float) -> None:
    with _api_metrics:
        metrics.add_metric(name=name, unit=unit, value=value)


def flush_api_metrics() -> None:
    """At the end of each API request; health/openapi add none: no empty EMF blobs."""
    with _api_metrics:
        if metrics.metric_set:
            metrics.flush_metrics()


def step_handler(
    fn: Callable[[dict[str, Any], Any], dict[str, Any]],
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A tune step's Lambda handler: JSON logs with the Lambda context and the event, an X-Ray segment, and
    its EMF metrics (plus Powertools' ColdStart metric) flushed when it returns."""
    return logger.inject_lambda_context(log_event=True)(
        metrics.log_metrics(capture_cold_start_metric=True)(tracer.capture_lambda_handler(fn))
    )


def api_request_started(request_id: str | None) -> None:
    """Per API request (the Chalice app is the handler, so Powertools' decorators can't wrap it): the API
    Gateway request id becomes the logs' correlation id, and the first request of a process counts a cold start.
    The id is kept per thread: the local API server runs concurrent requests on threads of one process."""
    global _cold
    logger.thread_safe_append_keys(correlation_id=request_id)
    if _cold:
        _cold = False
        add_api_metric("ColdStart", MetricUnit.Count, 1)
