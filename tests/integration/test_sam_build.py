"""`sam build` packages the Lambdas from template.yaml (layers BuildMethod makefile + the functions' code),
offline and without Docker, within Lambda's 250 MB unzipped limit: the ask function with the serve layer
alone, a tune step with the serve and tune layers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rag_autotune.paths import REPO

sys.path.insert(0, str(REPO / "scripts"))
import sam_build  # noqa: E402

pytestmark = pytest.mark.skipif(sam_build.unavailable_reason() is not None, reason=str(sam_build.unavailable_reason()))


def test_sam_builds_the_ask_function_and_its_layer(tmp_path: Path) -> None:
    sizes = sam_build.build(tmp_path / "build")
    assert set(sizes) == {"ApiFunction", "ServeLayer"}
    layer, function = tmp_path / "build" / "ServeLayer" / "python", tmp_path / "build" / "ApiFunction"
    assert (layer / "rag_autotune" / "http_api.py").is_file() and (layer / "chalice" / "app.py").is_file()
    assert not (layer / "torch").exists() and not (layer / "rag_autotune" / "training").exists()
    assert not (layer / "rag_autotune" / "tune").exists()
    assert (layer / "pydantic" / "main.pyc").is_file()  # the layer's bytecode (build_layer.py) survives sam
    assert {"app.py", "openapi.json"} <= {p.name for p in function.iterdir()}
    assert (function / "web" / "widget.js").is_file()
    assert sizes["ServeLayer"] + sizes["ApiFunction"] < 250 * 1024 * 1024  # Lambda's unzipped limit
    built = (tmp_path / "build" / "template.yaml").read_text()
    assert "ServeLayer" in built and "python3.13" in built


def test_sam_builds_a_tune_step_with_both_layers(tmp_path: Path) -> None:
    sizes = sam_build.build(tmp_path / "build", "TunePrepareFunction")
    assert set(sizes) == {"TunePrepareFunction", "ServeLayer", "TuneLayer"}
    tune = tmp_path / "build" / "TuneLayer" / "python" / "rag_autotune" / "tune"
    assert (tune / "steps.py").is_file() and not (tune / "train_step.py").exists()
    assert (tmp_path / "build" / "TunePrepareFunction" / "prepare.py").is_file()
    assert sum(sizes.values()) < 250 * 1024 * 1024
