"""The ask Lambda's layer is self-sufficient: built from the installed distributions, it imports and encodes
in a process with no site-packages at all (boto3 and chalice beside it, as the runtime provides them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rag_autotune.paths import REPO
from tests.model_fixtures import exported_base_int8


def _build_layer_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("build_layer", REPO / "scripts" / "build_layer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serve_layer_imports_and_encodes_alone(tmp_path: Path) -> None:
    build_layer = _build_layer_module()
    py = build_layer.build(tmp_path / "layer")
    assert (py / "rag_autotune" / "http_api.py").exists()
    assert not (py / "rag_autotune" / "training").exists() and not (py / "torch").exists()
    result = build_layer.check(py, exported_base_int8())
    assert result == {"ok": True, "heavy": []}
    assert build_layer.size(py) < 250e6  # Lambda's limit for a function and its layers, unzipped
