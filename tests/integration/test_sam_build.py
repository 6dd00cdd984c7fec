"""`sam build` packages the ask Lambda from template.yaml (layer BuildMethod makefile + the function's code),
offline and without Docker, within Lambda's 250 MB unzipped limit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rag_autotune.paths import REPO

sys.path.insert(0, str(REPO / "scripts"))
import sam_build  # noqa: E402

pytestmark = pytest.mark.skipif(not sam_build.available(), reason="no .sam-venv/bin/sam (make installs aws-sam-cli)")


def test_sam_builds_the_ask_function_and_its_layer(tmp_path: Path) -> None:
    sizes = sam_build.build(tmp_path / "build")
    assert set(sizes) == {"ApiFunction", "ServeLayer"}
    layer, function = tmp_path / "build" / "ServeLayer" / "python", tmp_path / "build" / "ApiFunction"
    assert (layer / "rag_autotune" / "http_api.py").is_file() and (layer / "chalice" / "app.py").is_file()
    assert not (layer / "torch").exists() and not (layer / "rag_autotune" / "training").exists()
    assert {"app.py", "openapi.json"} <= {p.name for p in function.iterdir()}
    assert (function / "web" / "widget.js").is_file()
    assert sizes["ServeLayer"] + sizes["ApiFunction"] < 250 * 1024 * 1024  # Lambda's unzipped limit
    built = (tmp_path / "build" / "template.yaml").read_text()
    assert "ServeLayer" in built
