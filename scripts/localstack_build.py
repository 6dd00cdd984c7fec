"""The LocalStack community-edition variant of template.yaml: generated from it, never edited by hand.

Community LocalStack (4.14.0, the last image that runs without an account) differs from AWS in two ways
the build absorbs, so that `samlocal build && samlocal deploy` of the same resources works there:

- **Layers are accepted but not applied at invoke.** Every function that uses ServeLayer (and TuneLayer) gets
  the layers' content (built by the same recipe, layers/serve/Makefile) vendored into its own code folder, one
  folder per CodeUri, and loses its `Layers`; the layers themselves are dropped.
- **Container images need ECR, which is Pro.** With `--train zip` (the default) TuneTrainFunction becomes a
  zip function whose folder holds its handler, the serve code and the train extra with CPU torch. That is
  far above Lambda's 250 MB unzipped, so localstack/docker-compose.yml raises LocalStack's
  LAMBDA_LIMITS_CODE_SIZE_UNZIPPED. `--train image` keeps the image (LocalStack Pro, LOCALSTACK_AUTH_TOKEN).

Each code folder builds with `BuildMethod: makefile` (a generated Makefile that copies the folder): sam's
default python builder copies source without `*.so`, which would drop numpy's, onnxruntime's and pydantic's
compiled modules. Everything else (API, table, bucket, state machine, schedule, policies, outputs) is
template.yaml's, with relative paths rewritten for the output folder.

Output: <out>/template.json (long-form intrinsics) and <out>/code/<folder>/. `plan()` is pure (tests check
it); `materialise()` does the copying and installing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("ServeLayer", "TuneLayer")  # vendored, in this order (as Lambda extracts them); built by their Makefile
TRAIN_FUNCTION = "TuneTrainFunction"
TRAIN_HANDLER = REPO / "functions" / "tune" / "train" / "handler.py"
# The train Dockerfile installs torch from here: an unpinned or PyPI torch is a multi-GB CUDA build.
TORCH_INDEX_URL = "https://download.pytorch.org/whl/cpu"


@dataclass
class Plan:
    """The variant template and, per code folder (relative to the output), what goes into it."""

    template: dict[str, Any]
    folders: dict[str, list[Path]] = field(default_factory=dict)  # folder → source dirs/files copied in
    layers: dict[str, list[str]] = field(default_factory=dict)  # folder → the layers whose content it gets
    train: str | None = None  # the folder that also gets the train extra (CPU torch)
    targets: dict[str, list[str]] = field(default_factory=dict)  # folder → functions built from it


def _vendored(ref: Any) -> str | None:
    """The name of a layer this build vendors, when `ref` is a `!Ref` to one."""
    return ref["Ref"] if isinstance(ref, dict) and ref.get("Ref") in LAYERS else None


def plan(doc: dict[str, Any], out: Path, train: str = "zip", repo: Path = REPO) -> Plan:
    """The LocalStack variant of a loaded template.yaml (resources.load_template) written under `out`."""
    if train not in ("zip", "image"):
        raise ValueError(f"--train is zip or image, not {train!r}")
    t = copy.deepcopy(doc)
    resources: dict[str, Any] = t["Resources"]
    to_repo = Path(os.path.relpath(repo, out))
    result = Plan(t)
    if any(_vendored(x) for x in t.get("Globals", {}).get("Function", {}).get("Layers", [])):
        raise ValueError("a layer in Globals: vendor it per function instead")
    for name, res in resources.items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["DefinitionUri"] = str(to_repo / props["DefinitionUri"])
        if res["Type"] != "AWS::Serverless::Function":
            continue
        if name == TRAIN_FUNCTION and train == "zip":
            folder = "code/train"
            for key in ("PackageType", "ImageConfig", "ImageUri"):
                props.pop(key, None)
            props.update(Runtime="python3.11", Handler="handler.handler", CodeUri=folder + "/")
            res["Metadata"] = {"BuildMethod": "makefile"}  # in place of the Dockerfile build
            result.folders[folder] = [TRAIN_HANDLER]  # rag_autotune comes with the install of the extras
            result.targets[folder] = [name]
            result.train = folder
            continue
        if name == TRAIN_FUNCTION:
            res["Metadata"]["DockerContext"] = str(to_repo / res["Metadata"]["DockerContext"])
            res["Metadata"]["Dockerfile"] = str(to_repo / res["Metadata"]["Dockerfile"])
            continue
        layers = props.get("Layers", [])
        used = sorted((n for x in layers if (n := _vendored(x))), key=LAYERS.index)
        if used:
            props["Layers"] = [x for x in layers if not _vendored(x)]
            if not props["Layers"]:
                del props["Layers"]
        source = repo / props["CodeUri"]
        if used:
            folder = f"code/{source.name}"
            if result.layers.setdefault(folder, used) != used:
                raise ValueError(f"{name}: the functions of {props['CodeUri']} use different layers")
            result.folders[folder] = [source]
            result.targets.setdefault(folder, []).append(name)
            props["CodeUri"] = folder + "/"
            res["Metadata"] = {**res.get("Metadata", {}), "BuildMethod": "makefile"}
        else:
            props["CodeUri"] = str(to_repo / props["CodeUri"])
    for layer in LAYERS:
        resources.pop(layer, None)
        if f'"{layer}"' in json.dumps(t):
            raise ValueError(f"{layer} is still referenced in the LocalStack variant")
    return result


def makefile(functions: list[str]) -> str:
    """Build each function by copying the folder as it is (compiled modules included), minus this file."""
    targets = " ".join(f"build-{f}" for f in functions)
    return (
        "# Generated by scripts/localstack_build.py: copy this vendored folder into the function's artifact.\n"
        f"{targets}:\n"
        '\tfind . -mindepth 1 -maxdepth 1 ! -name Makefile -exec cp -R {} "$(ARTIFACTS_DIR)/" \\;\n'
    )


def _copy_into(src: Path, dest: Path, bytecode: bool = False) -> None:
    """src (a file, or a folder's contents) into dest; `bytecode` keeps .pyc files: a built layer's are part
    of it (build_layer.py), while a source folder's are this machine's leftovers."""
    if src.is_dir():
        ignore = None if bytecode else shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(src, dest, dirs_exist_ok=True, ignore=ignore)
    else:
        shutil.copy2(src, dest / src.name)


def build_layer(layer: str, dest: Path, python: str) -> Path:
    """The layer's python/ folder, by the recipe `sam build` uses for it."""
    subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(REPO / "layers" / "serve"),
            f"build-{layer}",
            f"ARTIFACTS_DIR={dest}",
            f"PY={python}",
        ],
        check=True,
    )
    return dest / "python"


def install_train(dest: Path, python: str, torch_index: str) -> None:
    """torch (CPU) first, then the serve and train extras, into a scratch venv whose site-packages is copied:
    the Dockerfile's order, so that no resolver ever picks a CUDA torch."""
    with tempfile.TemporaryDirectory(prefix="rag-train-zip-") as tmp:
        subprocess.run([python, "-m", "venv", tmp], check=True)
        pip = [str(Path(tmp) / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, "torch==2.13.0", *(["--index-url", torch_index] if torch_index else [])], check=True)
        subprocess.run([*pip, f"{REPO}[serve,train]"], check=True)
        site = next(Path(tmp).glob("lib/python3.*/site-packages"))
        for item in site.iterdir():
            if item.name.split("-")[0] in ("pip", "setuptools", "_distutils_hack", "__pycache__"):
                continue
            if item.is_dir():
                shutil.copytree(item, dest / item.name, dirs_exist_ok=True)
            else:
                shutil.copy2(item, dest / item.name)


def materialise(
    p: Plan,
    out: Path,
    python: str = sys.executable,
    torch_index: str = TORCH_INDEX_URL,
    only: set[str] | None = None,
) -> None:
    """Write the template and fill the code folders; `only` fills some and leaves the others empty (tests
    build the API's alone: the train folder is a multi-GB install)."""
    fill = {f for f in p.folders if only is None or f in only}
    shutil.rmtree(out / "code", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    needed = {layer for folder in fill for layer in p.layers.get(folder, [])}
    built = {layer: build_layer(layer, out / layer, python) for layer in LAYERS if layer in needed}
    for folder, sources in p.folders.items():
        dest = out / folder
        dest.mkdir(parents=True)
        (dest / "Makefile").write_text(makefile(p.targets[folder]))
        if folder not in fill:
            continue
        for src in sources:
            _copy_into(src, dest)
        if folder == p.train:
            install_train(dest, python, torch_index)
        for layer in p.layers.get(folder, []):
            _copy_into(built[layer], dest, bytecode=True)
    (out / "template.json").write_text(json.dumps(p.template, indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "build" / "localstack")
    ap.add_argument("--train", choices=("zip", "image"), default="zip", help="image needs LocalStack Pro (ECR)")
    ap.add_argument("--torch-index", default=os.environ.get("TORCH_INDEX_URL", TORCH_INDEX_URL))
    ap.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"))
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "layers" / "serve" / "python"))
    from rag_autotune.local.resources import load_template

    p = plan(load_template(REPO / "template.yaml"), args.out.resolve(), args.train)
    materialise(p, args.out.resolve(), args.python, args.torch_index)
    print(f"LocalStack variant: {args.out / 'template.json'} ({', '.join(sorted(p.folders))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
