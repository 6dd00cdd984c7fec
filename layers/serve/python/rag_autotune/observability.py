"""Logger, metrics and tracer, created once. Configured by POWERTOOLS_* variables (template.yaml Globals);
the defaults below apply where those are not set (local runs, tests)."""

from __future__ import annotations

import os

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "rag-autotune")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "RagAutotune")

from aws_lambda_powertools import Logger, Metrics, Tracer  # noqa: E402 (after the defaults above)

logger = Logger()
metrics = Metrics()
tracer = Tracer()
