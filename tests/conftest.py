"""Shared fixtures. `moto_url` is a real moto server on 127.0.0.1 (HTTP, like AWS), one per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "RagAutotuneTest")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "rag-autotune")
# Simulated users vote far faster than people: the per-client feedback bucket is off unless a test sets one
# (tests/unit/test_auth_limits.py does).
os.environ.setdefault("RAG_FEEDBACK_RATE_PER_S", "0")


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    from rag_autotune.local import moto_fixes

    moto_fixes.apply()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "MOTO_PORT")
    }
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        MOTO_PORT=str(port),
    )
    yield url
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def unique() -> str:
    """A short unique suffix, so tests sharing one moto server never share a bucket or table."""
    return uuid.uuid4().hex[:8]
