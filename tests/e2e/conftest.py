"""One embedded stack per test session: moto's server as AWS, the real adapters, the base model bootstrapped
for real, a tiny slice of the demo corpus ingested, and the Chalice app served over HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from rag_autotune.paths import REPO

TINY_DOCS = 40


@pytest.fixture(scope="session")
def stack(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    from rag_autotune.ingest import ingest
    from rag_autotune.local.cfn import deploy_stack
    from rag_autotune.local.server import ApiServer, load_api_module
    from rag_autotune.runtime import Runtime
    from rag_autotune.settings import get_settings
    from rag_autotune.training.bootstrap import bootstrap

    suffix = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp("stack")
    os.environ.update(
        RAG_BUCKET=f"e2e-artifacts-{suffix}",
        RAG_TABLE=f"e2e-feedback-{suffix}",
        RAG_CACHE_DIR=str(tmp / "cache"),
        RAG_MANIFEST_TTL_S="0",  # see every swap at once
    )
    get_settings.cache_clear()
    settings = get_settings()
    deploy_stack(settings)  # template.yaml as a stack in moto, as `make run` does (local/cfn.py)
    rt = Runtime(settings)
    boot = bootstrap(rt.store, settings.cache_dir)
    corpus = tmp / "tiny.jsonl"
    lines = (REPO / "demo" / "corpus.jsonl").read_text().splitlines()[:TINY_DOCS]
    corpus.write_text("\n".join(lines) + "\n")
    ingest(corpus, store=rt.store, index=rt.index, load_encoder=rt.load_encoder)
    module = load_api_module()
    server = ApiServer(module.app, port=0).start()
    yield SimpleNamespace(url=server.url, settings=settings, rt=rt, app=module, corpus=corpus, boot=boot, tmp=Path(tmp))
    server.stop()
