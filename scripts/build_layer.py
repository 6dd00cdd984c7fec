"""Build the Lambda layers, as Lambda loads layers (<out>/python/…), and print their installed size.

The serve layer (every zip function) holds rag_autotune without tune/, training/ and local/, and the serving
dependencies: the versions installed in this environment (so the versions the tests ran), as the wheels for
the Lambda runtime (RUNTIME: its CPython, x86_64 manylinux), which need not be this interpreter's.
Pruned: files serving never imports (onnxruntime's C-API library and its quantisation/transformers tools,
numpy's tests and build tools, type stubs, caches). Extension modules are stripped of their symbols.
Bytecode: Lambda's /opt is read-only, so a layer without .pyc files compiles every module it imports at every
cold start. The modules serving imports are compiled by the runtime's Python (hash-based .pyc, valid whatever
the zip does to file times): ours beside their source, the dependencies' in place of it (sourceless), which
keeps the layer within its size budget.
boto3/botocore are not counted: the Lambda Python runtime provides them. Chalice is vendored into the
function package (app.py + __init__.py), as `chalice package` does.

The tune layer (the nightly zip steps, on top of the serve layer) holds rag_autotune/tune alone: Lambda
extracts a function's layers into one /opt, so it lands inside the serve layer's package. Not the train
step's module: that runs in the train image, which installs the whole package.

    python scripts/build_layer.py [--out build/layer] [--check]   # --check: import and serve from the layer alone
    python scripts/build_layer.py --tune --out build/tune-layer
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "layers" / "serve" / "python" / "rag_autotune"
# template.yaml's zip functions and layers: AL2023 (glibc 2.34), x86_64. The python3.11 runtime is Amazon
# Linux 2 (glibc 2.26), which cannot load the manylinux_2_28 wheels of onnxruntime, numpy and qdrant-edge.
RUNTIME = "python3.13"
PYTHON_VERSION = RUNTIME.removeprefix("python")
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
)
# The serve closure without boto3 (in the runtime), chalice (vendored per function) and qdrant-client (only
# for QDRANT_URL deployments; ship it in a second layer there). No tokenizers wheel: serving
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
    "*-stubs",
    "bin",
    "rag_autotune/training",  # torch's side: the train image and `rag-autotune bootstrap`
    "rag_autotune/local",  # the embedded default's machinery
    "rag_autotune/tune",  # the nightly steps: the tune layer
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


def install_wheels(target: Path, requirements: list[str]) -> None:
    """pip-install the wheels the Lambda runtime loads (RUNTIME's CPython, x86_64 manylinux) into target."""
    platforms = [f"--platform={p}" for p in PLATFORMS]
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "--no-deps", "--no-compile"]
    cmd += ["--only-binary=:all:", "--implementation=cp", f"--python-version={PYTHON_VERSION}", *platforms]
    subprocess.run([*cmd, *requirements], check=True)


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(out: Path, bytecode: bool = True) -> Path:
    """The serve layer in out/python; `bytecode=False` leaves it without .pyc files (to measure what they save)."""
    py = out / "python"
    shutil.rmtree(out, ignore_errors=True)
    py.mkdir(parents=True)
    install_wheels(py, [f"{name}=={metadata.version(name)}" for name in DISTS])
    shutil.copytree(SOURCE, py / "rag_autotune")
    for pattern in PRUNE:
        for p in list(py.glob(pattern)):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    strip = shutil.which("strip")
    if strip:
        for so in py.rglob("*.so*"):
            if so.parent.name.endswith(".libs"):
                continue  # auditwheel-patched libraries break when stripped
            subprocess.run([strip, "--strip-unneeded", str(so)], check=False, capture_output=True)
    if bytecode:
        python = runtime_python()
        if python is None:
            print(f"bytecode skipped: no {RUNTIME} on this machine to compile the layer with (it still works)")
        else:
            print(f"compiled the {compile_serving(py, python)} modules serving imports, with {python}")
    return py


def build_tune(out: Path) -> Path:
    """The tune layer: rag_autotune/tune/ (pure Python) without the train step's module."""
    py = out / "python"
    shutil.rmtree(out, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "train_step.py")
    shutil.copytree(SOURCE / "tune", py / "rag_autotune" / "tune", ignore=ignore)
    return py


def runtime_python() -> str | None:
    """An interpreter of RUNTIME's version, to import the layer with as Lambda would; None when there is none
    (a pyenv shim that names another version does not count)."""
    found = [str(p) for p in sorted(Path.home().glob(f".pyenv/versions/{PYTHON_VERSION}.*/bin/{RUNTIME}"))]
    for candidate in [shutil.which(RUNTIME), *found]:
        if candidate and subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    return None


# What the ask Lambda imports before it answers (functions/api/app.py, then the live pair's adapters).
SERVING_IMPORTS = """
import rag_autotune.http_api, rag_autotune.adapters.onnx_encoder, rag_autotune.adapters.qdrant_edge
import rag_autotune.adapters.s3, rag_autotune.adapters.dynamodb, rag_autotune.static_files, rag_autotune.openapi
import rag_autotune.runtime, rag_autotune.observability, rag_autotune.memory
"""

COMPILE = (
    """
import json, os, py_compile, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
"""
    + SERVING_IMPORTS
    + """
layer = os.path.realpath(sys.argv[1]) + os.sep
ours = layer + "rag_autotune" + os.sep
files = {os.path.realpath(f) for m in list(sys.modules.values()) if (f := getattr(m, "__file__", None))}
served = sorted(f for f in files if f.startswith(layer) and f.endswith(".py"))
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
for f in served:
    if f.startswith(ours):  # beside the source (__pycache__): our tracebacks keep their lines
        py_compile.compile(f, doraise=True, invalidation_mode=mode)
    else:  # in place of the source, where Python looks for a sourceless module
        py_compile.compile(f, cfile=f[:-3] + ".pyc", doraise=True, invalidation_mode=mode)
        os.remove(f)
print(json.dumps({"compiled": len(served)}))
"""
)


def compile_serving(py: Path, python: str) -> int:
    """Compile the modules serving imports, with `python` (RUNTIME's version); returns how many."""
    with tempfile.TemporaryDirectory() as tmp:  # not beside the layer: sam zips all of its folder
        runtime = runtime_dir(Path(tmp) / "runtime")
        cmd = [python, "-S", "-B", "-c", COMPILE, str(py), str(runtime)]  # -B: no __pycache__ of its imports
        out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"cannot compile the layer's serving modules:\n{out.stderr[-3000:]}")
    compiled: int = json.loads(out.stdout.strip().splitlines()[-1])["compiled"]
    return compiled


CHECK = (
    """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
"""
    + SERVING_IMPORTS
    + """
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
)


def runtime_dir(runtime: Path) -> Path:
    """boto3 and chalice in `runtime` (made afresh), as the Lambda runtime and the function package provide them."""
    shutil.rmtree(runtime, ignore_errors=True)
    for name in ("boto3", "botocore", "s3transfer", "python-dateutil", "six", "urllib3", "chalice"):
        copy_dist(name, runtime)  # pure Python: this environment's copy serves any runtime version
    return runtime


def check(py: Path, model: Path, python: str) -> dict[str, object]:
    """Import the serving modules from the layer alone (-S: no site-packages) with `python` (RUNTIME's
    version), boto3 and chalice beside it as the runtime and the function package would provide them."""
    runtime = runtime_dir(py.parent / "runtime")
    out = subprocess.run([python, "-S", "-c", CHECK, str(py), str(runtime), str(model)], capture_output=True, text=True)
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
    ap.add_argument("--tune", action="store_true", help="build the tune layer instead of the serve layer")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    py = (build_tune if args.tune else build)(Path(args.out))
    total = size(py)
    print(f"{'tune' if args.tune else 'serve'} layer: {total / 1e6:.1f} MB installed at {py}")
    tops = sorted(((size(p) if p.is_dir() else p.stat().st_size, p.name) for p in py.iterdir()), reverse=True)
    for s, name in tops[:8]:
        print(f"  {name:<32} {s / 1e6:6.1f} MB")
    if args.check and not args.tune:
        python = runtime_python()
        if python is None:
            print(f"check skipped: no {RUNTIME} on this machine to import the layer with")
            return 0
        print(check(py, _model_dir(py.parent), python))
    return 0


if __name__ == "__main__":
    sys.exit(main())
