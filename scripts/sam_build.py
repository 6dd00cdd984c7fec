"""`sam build` of a zip Lambda and its layers (by default ApiFunction and its ServeLayer), without Docker: the
packaging check used by tests/integration/test_sam_build.py and by `make bench-query` for the layer sizes.

The train function is a container image, so a full `sam build` needs Docker; building ApiFunction alone does
not. aws-sam-cli lives in .sam-venv (`make` installs it there: it pins a pydantic the project can't use)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_layer import RUNTIME, runtime_python  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAM = REPO / ".sam-venv" / "bin" / "sam"


def available() -> bool:
    return SAM.is_file()


def unavailable_reason() -> str | None:
    """Why `sam build` cannot run here, or None: it needs aws-sam-cli and the functions' Python on PATH."""
    if not available():
        return "no .sam-venv/bin/sam (make installs aws-sam-cli)"
    if runtime_python() is None:
        return f"no {RUNTIME} on this machine: sam builds the functions with the runtime's interpreter"
    return None


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(build_dir: Path, resource: str = "ApiFunction", template: Path = REPO / "template.yaml") -> dict[str, int]:
    """Bytes per built artifact folder (the function and its layer); RuntimeError with sam's output on failure."""
    shutil.rmtree(build_dir, ignore_errors=True)
    python = runtime_python()
    if python is None:
        raise RuntimeError(f"sam build needs {RUNTIME} on PATH, and this machine has none")
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},  # sam's own venv, not the project's paths
        "SAM_CLI_TELEMETRY": "0",
        # sam looks for the runtime's interpreter on PATH; the layers' Makefile runs the project venv's python
        "PATH": os.pathsep.join([str(Path(python).parent), str(REPO / ".venv" / "bin"), os.environ.get("PATH", "")]),
    }
    run = subprocess.run(
        [str(SAM), "build", resource, "--build-dir", str(build_dir), "--template-file", str(template)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if run.returncode:
        raise RuntimeError(f"sam build {resource} failed:\n{(run.stdout + run.stderr)[-3000:]}")
    return {p.name: size(p) for p in sorted(build_dir.iterdir()) if p.is_dir()}
