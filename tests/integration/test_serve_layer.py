"""The Lambda layers. The serve layer is self-sufficient: built from the Lambda runtime's wheels, it imports
and encodes in a process of the runtime's Python version with no site-packages at all (boto3 and chalice
beside it, as the runtime provides them), without tune/ or training/, from the bytecode it ships. The tune
layer is rag_autotune/tune."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rag_autotune.paths import REPO
from tests.model_fixtures import exported_base_int8


def _build_layer_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("build_layer", REPO / "scripts" / "build_layer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_layer = _build_layer_module()


@pytest.mark.skipif(build_layer.runtime_python() is None, reason=f"no {build_layer.RUNTIME} to import the layer with")
def test_serve_layer_imports_and_encodes_alone(tmp_path: Path) -> None:
    py = build_layer.build(tmp_path / "layer")
    assert (py / "rag_autotune" / "http_api.py").exists()
    assert not {"training", "tune", "local"} & {p.name for p in (py / "rag_autotune").iterdir()}
    assert not (py / "torch").exists()
    version = build_layer.PYTHON_VERSION.replace(".", "")
    assert list((py / "pydantic_core").glob(f"_pydantic_core.cpython-{version}-x86_64-linux-gnu.so"))
    # Lambda's /opt is read-only: the modules serving imports come compiled (ours beside their source, the
    # dependencies' in its place), so that no cold start compiles them.
    tag = f"cpython-{version}"
    assert (py / "rag_autotune" / "__pycache__" / f"http_api.{tag}.pyc").exists()
    assert (py / "pydantic" / "main.pyc").exists() and not (py / "pydantic" / "main.py").exists()
    assert (py / "rag_autotune" / "cli.py").exists() and not list(py.rglob(f"cli.{tag}.pyc"))  # not served
    result = build_layer.check(py, exported_base_int8(), build_layer.runtime_python())
    assert result == {"ok": True, "heavy": []}
    assert build_layer.size(py) < 250e6  # Lambda's limit for a function and its layers, unzipped


def test_tune_layer_is_the_tune_package_alone(tmp_path: Path) -> None:
    py = build_layer.build_tune(tmp_path / "tune-layer")
    assert [p.name for p in py.iterdir()] == ["rag_autotune"]
    assert [p.name for p in (py / "rag_autotune").iterdir()] == ["tune"]  # the serve layer has __init__.py
    shipped = {p.name for p in (py / "rag_autotune" / "tune").iterdir()}
    assert {"steps.py", "gate.py", "__init__.py"} <= shipped
    assert "train_step.py" not in shipped and "__pycache__" not in shipped  # the train image has its own
