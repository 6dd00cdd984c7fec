"""The layers the README draws, checked on the source: handlers → logic → adapters.

- Only adapters/ import the SDKs of the infrastructure (boto3/botocore, qdrant_client/qdrant_edge, onnxruntime).
  local/ may too: it is the embedded default's own machinery (moto's server, the Lambda runner, the stack), the
  stand-in for AWS itself, and never runs on Lambda (the serve layer leaves it out).
- Serving code imports nothing from tune/ or training/: the serve layer ships without them. The CLI (an
  operator's command, importing them inside its commands) and those packages themselves are not serving code.
tests/e2e/test_layering.py runs the API with tune/ and training/ unimportable."""

from __future__ import annotations

import ast
from pathlib import Path

from rag_autotune.paths import REPO

PACKAGE = REPO / "layers" / "serve" / "python" / "rag_autotune"
SDKS = {"boto3", "botocore", "qdrant_client", "qdrant_edge", "onnxruntime"}
SDK_HOMES = {"adapters", "local"}
NOT_SERVING = {"tune", "training", "local", "cli.py"}


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name → file, for every module of the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, name: str) -> set[str]:
    """Every module `path` (the module `name`) imports, anywhere in it, relative imports made absolute."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # `from . import tune`
    return found


def _top(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0]


def test_the_import_finder_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    sample = tmp_path / "mod.py"
    sample.write_text("def f():\n    from ..tune import steps\n    import onnxruntime as ort\nfrom . import live\n")
    found = imports(sample, "rag_autotune.memory.mod")
    assert {"rag_autotune.tune", "rag_autotune.tune.steps", "onnxruntime", "rag_autotune.memory.live"} <= found


def test_only_adapters_and_local_import_the_infrastructure_sdks() -> None:
    offenders = {
        name: sorted(sdks)
        for name, path in _modules().items()
        if _top(path) not in SDK_HOMES and (sdks := {m for m in imports(path, name) if m.split(".")[0] in SDKS})
    }
    assert offenders == {}


def test_serving_code_imports_nothing_from_tune_or_training() -> None:
    serving = {n: p for n, p in _modules().items() if _top(p) not in NOT_SERVING}
    assert {"rag_autotune.memory", "rag_autotune.http_api", "rag_autotune.runtime"} <= set(serving)
    banned = (["rag_autotune", "tune"], ["rag_autotune", "training"])
    offenders = {
        name: sorted(bad)
        for name, path in serving.items()
        if (bad := {m for m in imports(path, name) if m.split(".")[:2] in banned})
    }
    assert offenders == {}


def test_the_api_handler_imports_nothing_from_tune_or_training() -> None:
    app = REPO / "functions" / "api" / "app.py"
    assert not {m for m in imports(app, "app") if m.startswith(("rag_autotune.tune", "rag_autotune.training"))}
