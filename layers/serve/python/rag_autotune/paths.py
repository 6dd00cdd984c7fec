"""Where the repository's files are, for the CLI and the embedded default (never used on Lambda)."""

from __future__ import annotations

from pathlib import Path


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "template.yaml").exists():
            return parent
    return here.parents[4]  # layers/serve/python/rag_autotune/paths.py


REPO = _repo_root()
TEMPLATE = REPO / "template.yaml"
ASL = REPO / "infra" / "tune.asl.json"
INGEST_ASL = REPO / "infra" / "ingest.asl.json"
LOCAL_STATE = REPO / ".local" / "state"  # the embedded stack's saved state (RAG_STATE_DIR moves it)
