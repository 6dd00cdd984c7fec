"""Build the serve layer the ask Lambda carries, as Lambda loads layers (build/layer/python/…), and print
its installed size.

The layer holds rag_autotune (without training/ and local/) and the serving dependencies, copied from this
environment's installed distributions (their RECORD files), so the layer is exactly what the tests ran.
Pruned: files serving never imports (onnxruntime's C-API library and its quantisation/transformers tools,
numpy's tests and build tools, type stubs, caches). Extension modules are stripped of their symbols.
boto3/botocore are not counted: the Lambda Python runtime provides them. Chalice is vendored into the
function package (app.py + __init__.py), as `chalice package` does.

    python scripts/build_layer.py [--out build/layer] [--check]    # --check: import and serve from the layer alone
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The serve closure without boto3 (in the runtime), chalice (vendored per function) and qdrant-client (only
# for QDRANT_URL deployments; ship it in a second layer there). No tokenizers wheel (8.5 MB): serving
# tokenises with adapters/wordpiece.py.
DISTS = [
    "onnxruntime",
    "numpy",
    "qdrant-edge-py",
    "aws-lambda-powertools",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "python-dotenv",
    "typing-extensions",
    "typing-inspection",
    "annotated-types",
    "jmespath",
    "flatbuffers",
    "packaging",
    "aws-xray-sdk",
    "wrapt",
]
PRUNE = [
    "onnxruntime/capi/libonnxruntime.so.*",
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/tools",
    "onnxruntime/datasets",
    "numpy/_core/_simd.*",
    "numpy/_core/include",
    "numpy/*/tests",
    "numpy/tests",
    "numpy/f2py",
    "numpy/distutils",
    "numpy/testing",
    "numpy/_pyinstaller",
    "numpy/random",  # serving draws no random numbers, transforms nothing, fits no polynomials
    "numpy/fft",
    "numpy/polynomial",
    "numpy/ma",
    "numpy/typing/tests",
    "**/__pycache__",
    "**/*.pyi",
    "rag_autotune/training",
    "rag_autotune/local",
    "pydantic/v1",
    "aws_lambda_powertools/utilities/parser",
    "aws_lambda_powertools/utilities/data_classes",
    "aws_lambda_powertools/event_handler",
]


def copy_dist(name: str, target: Path) -> None:
    dist = metadata.distribution(name)
    for f in dist.files or []:
        src = Path(str(dist.locate_file(f)))
        rel = Path(str(f))
        if rel.parts[0] in ("..", "bin") or not src.is_file():
            continue
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(out: Path) -> Path:
    py = out / "python"
    shutil.rmtree(out, ignore_errors=True)
    py.mkdir(parents=True)
    for name in DISTS:
        copy_dist(name, py)
    shutil.copytree(REPO / "layers" / "serve" / "python" / "rag_autotune", py / "rag_autotune")
    for pattern in PRUNE:
        for p in list(py.glob(pattern)):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    strip = shutil.which("strip")
    if strip:
        for so in py.rglob("*.so*"):
            if so.parent.name.endswith(".libs"):
                continue  # auditwheel-patched libraries break when stripped
            subprocess.run([strip, "--strip-unneeded", str(so)], check=False, capture_output=True)
    return py


CHECK = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import rag_autotune.http_api, rag_autotune.adapters.onnx_encoder, rag_autotune.adapters.qdrant_edge
import rag_autotune.adapters.s3, rag_autotune.adapters.dynamodb
import numpy as np
from rag_autotune.adapters.onnx_encoder import OnnxEncoder
enc = OnnxEncoder(sys.argv[3], "v0")
v = enc.encode(["open and possibly create a file", "allocate memory"])
assert v.shape == (2, enc.dim) and abs(float(np.linalg.norm(v[0])) - 1) < 1e-4
from rag_autotune.memory import MemoryParams, MemoryVote, VoteMemory  # the feedback memory's numpy, too
mem = VoteMemory("v0", enc.dim, MemoryParams(), epoch=0.0)
mem.add(MemoryVote("open a file", "open.2", "u", True, 0.0), v[0])
assert mem.boosts(v[0], 0.0)["open.2"] > 0 and not mem.boosts(v[1], 0.0)
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'huggingface_hub'))
print(json.dumps({"ok": True, "heavy": heavy}))
"""


def check(py: Path, model: Path) -> dict[str, object]:
    """Import the serving modules from the layer alone (-S: no site-packages), boto3 and chalice beside it
    as the runtime and the function package would provide them."""
    runtime = py.parent / "runtime"
    shutil.rmtree(runtime, ignore_errors=True)
    for name in ("boto3", "botocore", "s3transfer", "python-dateutil", "six", "urllib3", "chalice"):
        copy_dist(name, runtime)
    out = subprocess.run(
        [sys.executable, "-S", "-c", CHECK, str(py), str(runtime), str(model)], capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(f"the layer does not import on its own:\n{out.stderr[-3000:]}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _model_dir(work: Path) -> Path:
    """The int8 serving model, exported here for the check (torch runs in this process, not in the layer's)."""
    from rag_autotune.training.export import base_model_path, export_int8

    target = work / "model-v0"
    if not (target / "model.onnx").exists():
        shutil.rmtree(target, ignore_errors=True)
        export_int8(base_model_path(), target)
    return target


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "build" / "layer"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    py = build(Path(args.out))
    total = size(py)
    print(f"serve layer: {total / 1e6:.1f} MB installed at {py}")
    tops = sorted(((size(p) if p.is_dir() else p.stat().st_size, p.name) for p in py.iterdir()), reverse=True)
    for s, name in tops[:8]:
        print(f"  {name:<32} {s / 1e6:6.1f} MB")
    if args.check:
        print(check(py, _model_dir(py.parent)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
