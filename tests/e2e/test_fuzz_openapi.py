"""Issue 5, contract fuzzing: schemathesis reads the /openapi.json the embedded default serves and throws
generated requests at every operation, valid ones and invalid ones, with a bounded number of examples. Every
answer must be a non-5xx that matches the document (schemathesis's checks: status code, content type, body
schema, headers). The API key is configured for the run, so schemathesis also checks that /ask and /feedback
refuse requests without it. Queries are logged in a table of the test's own: the session's table stays as it
was for the tests that count what is in it.

Driven through hypothesis directly (operation.as_strategy), not schemathesis's pytest plugin: its lazy
fixture loader does not run under pytest 9."""

from __future__ import annotations

import uuid
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode

from rag_autotune import http_api
from rag_autotune.adapters.dynamodb import DynamoFeedbackStore
from rag_autotune.auth import ApiKeyCheck
from rag_autotune.local.resources import ensure_table, load_template, table_spec

KEY = "fuzz-api-key-0123456789abcdef"
EXAMPLES = 50  # per operation and mode: about 250 requests in all, a few seconds once the stack is up
# What an invalid request may get: schemathesis's list plus 413, the Guard's answer to a body over its limit
# (before the body is read, as API Gateway's own limit would). 5xx is not among them: the test refuses it.
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]


@pytest.fixture
def served_schema(stack: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> Any:
    guard = http_api.Guard.from_settings(stack.settings)
    monkeypatch.setattr(stack.app, "guard", http_api.Guard(ApiKeyCheck(KEY), guard.max_body_bytes, None))
    served = stack.app.runtime.feedback
    table = f"e2e-fuzz-{uuid.uuid4().hex[:8]}"
    ensure_table(served._ddb, table, table_spec(load_template()))
    monkeypatch.setattr(stack.app.runtime, "feedback", DynamoFeedbackStore(served._ddb, table))
    config = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REJECTED}}})
    schema = schemathesis.openapi.from_url(stack.url + "/openapi.json", config=config)
    assert schema.config.checks.negative_data_rejection.expected_statuses == REJECTED
    return schema


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_served_openapi_holds_under_fuzzing(served_schema: Any, mode: GenerationMode) -> None:
    statuses: Counter[tuple[str, int]] = Counter()
    operations = [result.ok() for result in served_schema.get_all_operations()]
    assert {op.path for op in operations} == {"/ask", "/feedback", "/health"}
    for op in operations:
        if mode is GenerationMode.NEGATIVE and op.method.upper() != "POST":
            continue  # GET /health takes no input: there is nothing to make invalid

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def run(case: Any) -> None:
            response = case.call_and_validate(headers={"x-api-key": KEY}, timeout=30)
            statuses[(case.path, response.status_code)] += 1
            assert response.status_code < 500, response.text

        run()
    assert sum(statuses.values()) >= 2 * len(operations) - 1, statuses
    if mode is GenerationMode.POSITIVE:
        assert statuses[("/ask", 200)] > 0, statuses  # valid questions were answered, not only refused
        assert statuses[("/feedback", 404)] > 0, statuses  # votes on made-up query ids: unknown, not a 5xx
