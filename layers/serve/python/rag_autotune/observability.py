"""Logger, metrics and tracer, created once. Configured by POWERTOOLS_* variables (template.yaml Globals)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics()
tracer = Tracer()
