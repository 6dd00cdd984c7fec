"""`sam build` of the ask Lambda (ApiFunction and its ServeLayer), without Docker: the packaging check used by
tests/integration/test_sam_build.py and by `make bench-query` for the layer sizes.

The train function is a container image, so a full `sam build` needs Docker; building ApiFunction alone does
not. aws-sam-cli lives in .sam-venv (`make` installs it there: it pins a pydantic the project can't use)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAM = REPO / ".sam-venv" / "bin" / "sam"


def available() -> bool:
    return SAM.is_file()


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(build_dir: Path, resource: str = "ApiFunction", template: Path = REPO / "template.yaml") -> dict[str, int]:
    """Bytes per built artifact folder (the function and its layer); RuntimeError with sam's output on failure."""
    shutil.rmtree(build_dir, ignore_errors=True)
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},  # sam's own venv, not the project's paths
        "SAM_CLI_TELEMETRY": "0",
        # sam looks for the runtime's interpreter (python3.11) on PATH: the project venv has it
        "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
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
