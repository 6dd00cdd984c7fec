"""What the benchmarks share: moto's server as AWS with a bucket and a table of the bench's own, the settings
and the Runtime read from that environment, and `rag-autotune serve` processes (each answers one request at
a time, like one Lambda instance). Import after the script has put layers/serve/python on sys.path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from rag_autotune.domain import IngestReport
from rag_autotune.local import cfn, stack
from rag_autotune.local.resources import ensure_resources
from rag_autotune.runtime import Runtime
from rag_autotune.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]


@dataclass
class BenchStack:
    moto: stack.MotoStack
    settings: Settings
    rt: Runtime
    suffix: str

    def stop(self) -> None:
        self.moto.stop()


def start(prefix: str, cache_dir: Path, *, deploy_template: bool = False, **env: str) -> BenchStack:
    """moto started, RAG_BUCKET/RAG_TABLE named `<prefix>-<random>`, `env` exported for this process and the
    ones it starts, and the bucket and table made: from template.yaml as a stack (`deploy_template`, which
    also makes the functions and the state machine) or as bare resources."""
    moto = stack.MotoStack().start()
    suffix = uuid.uuid4().hex[:6]
    os.environ.update(
        RAG_BUCKET=f"{prefix}-{suffix}", RAG_TABLE=f"{prefix}-{suffix}", RAG_CACHE_DIR=str(cache_dir), **env
    )
    get_settings.cache_clear()
    settings = get_settings()
    if deploy_template:
        cfn.deploy_stack(settings)
    else:
        ensure_resources(settings)
    return BenchStack(moto, settings, Runtime(settings), suffix)


def bootstrap_and_ingest(bench: BenchStack, corpus: Path) -> IngestReport:
    """The base encoder uploaded, then `corpus` ingested as the first live version, with its time printed."""
    from rag_autotune.ingest import ingest
    from rag_autotune.training.bootstrap import bootstrap

    settings, rt = bench.settings, bench.rt
    bootstrap(rt.store, settings.cache_dir)
    t = time.perf_counter()
    report = ingest(
        corpus,
        store=rt.store,
        index=rt.index,
        load_encoder=rt.load_bulk_encoder,
        chunk_chars=settings.chunk_chars,
        chunk_overlap=settings.chunk_overlap,
    )
    print(f"ingest: {report.chunks} chunks in {time.perf_counter() - t:.0f} s", flush=True)
    return report


def serve(port: int, cache_dir: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """`rag-autotune serve` on port, with a /tmp of its own. Its JSON logs go to a file: a pipe nobody reads
    would fill up and stall it."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "rag_autotune.cli", "serve", "--port", str(port)],
            env={
                **os.environ,
                "PYTHONPATH": f"{REPO / 'layers' / 'serve' / 'python'}:{REPO}",
                "RAG_CACHE_DIR": str(cache_dir),
                **env,
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_serving(servers: list[subprocess.Popen[bytes]], logs: list[Path], timeout_s: float = 120) -> None:
    """Until each server has printed "serving http" (the app and the live pair are loaded)."""
    deadline = time.time() + timeout_s
    while not all(b"serving http" in log.read_bytes() for log in logs):
        exited = [log for s, log in zip(servers, logs, strict=True) if s.poll() is not None]
        if exited or time.time() > deadline:
            tail = exited[0].read_text()[-2000:] if exited else ""
            raise RuntimeError(f"API process did not start; see {logs[0].parent}\n{tail}")
        time.sleep(0.2)


def stop_servers(servers: list[subprocess.Popen[bytes]]) -> None:
    for s in servers:
        s.terminate()
    for s in servers:
        s.wait(10)
