"""The LocalStack community-edition build (scripts/localstack_build.py), checked offline: LocalStack itself
needs Docker, which these machines lack, but what it would be given can be built and run here.

- the variant is template.yaml's resources with the layers vendored into each function and the train
  image turned into a zip function; it transforms with aws-sam-translator and passes cfn-lint;
- each vendored folder builds through a generated Makefile (sam's python builder would drop every *.so);
- `sam build ApiFunction` of the variant gives a function that answers /ask with no layer at all: a fresh
  `python3.13 -S` process (the runtime's version), given only the built folder and what the Lambda runtime
  provides (boto3), serves an API Gateway event against the e2e stack (moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rag_autotune.local import cfn
from rag_autotune.local.resources import load_template
from rag_autotune.paths import ASL, INGEST_ASL, REPO, TEMPLATE

sys.path.insert(0, str(REPO / "scripts"))
import build_layer  # noqa: E402
import localstack_build  # noqa: E402
import sam_build  # noqa: E402


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _functions(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in t["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}


def test_variant_vendors_the_layer_into_each_function_and_zips_the_train_step(
    doc: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "localstack"
    p = localstack_build.plan(doc, out)
    t = p.template
    layers = {"ServeLayer", "TuneLayer"}
    assert not any(name in json.dumps(t) for name in layers)
    assert set(t["Resources"]) == set(doc["Resources"]) - layers  # nothing else added or dropped
    functions = _functions(t)
    assert all("Layers" not in f["Properties"] for f in functions.values())
    assert all(f["Properties"].get("PackageType", "Zip") == "Zip" for f in functions.values())
    train = functions["TuneTrainFunction"]
    assert train["Properties"]["Handler"] == "handler.handler" and train["Properties"]["Runtime"] == "python3.11"
    assert p.train == "code/train"
    # sam's default python builder drops *.so from source: every vendored folder builds with its Makefile
    assert all(f["Metadata"] == {"BuildMethod": "makefile"} for f in functions.values())
    assert sorted(p.targets["code/tune"]) == sorted(n for n in functions if n.startswith("Tune") and "Train" not in n)
    assert {f["Properties"]["CodeUri"] for f in functions.values()} == {
        "code/api/",
        "code/tune/",
        "code/train/",
        "code/ingest/",
    }
    assert p.layers == {
        "code/api": ["ServeLayer"],
        "code/tune": ["ServeLayer", "TuneLayer"],
        "code/ingest": ["ServeLayer"],
    }
    assert p.folders["code/api"] == [REPO / "functions" / "api"]
    machines = {k for k, v in doc["Resources"].items() if v["Type"] == "AWS::Serverless::StateMachine"}
    for name, asl in (("TuneStateMachine", ASL), ("IngestStateMachine", INGEST_ASL)):
        assert (out / t["Resources"][name]["Properties"]["DefinitionUri"]).resolve() == asl.resolve()
    # Everything else is the source's: the same properties on every resource but the paths and the layer.
    for name, res in doc["Resources"].items():
        if name in ({"TuneTrainFunction"} | machines | layers) or name in functions:
            continue
        assert t["Resources"][name] == res

    pro = localstack_build.plan(doc, out, train="image")  # LocalStack Pro has ECR: the image stays
    image = _functions(pro.template)["TuneTrainFunction"]
    assert image["Properties"]["PackageType"] == "Image" and pro.train is None
    assert (out / image["Metadata"]["Dockerfile"]).resolve() == REPO / "functions" / "tune" / "train" / "Dockerfile"


def test_variant_transforms_and_passes_cfn_lint(doc: dict[str, Any], tmp_path: Path) -> None:
    from cfnlint.api import ManualArgs, lint

    out = tmp_path / "localstack"
    p = localstack_build.plan(doc, out)
    localstack_build.materialise(p, out, only=set())  # the template and empty code folders
    packaged, _ = cfn.package(json.loads((out / "template.json").read_text()), out)
    uris = [f["Properties"]["CodeUri"] for f in _functions(packaged).values()]
    functions = len(_functions(doc))  # every function of template.yaml
    assert len(uris) == functions and all(u.startswith("s3://") for u in uris)  # every one a zip, none an image
    transformed = cfn.transform(packaged)
    lambdas = [r for r in transformed["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(lambdas) == functions and all("Layers" not in r["Properties"] for r in lambdas)
    found = lint(json.dumps(transformed), config=ManualArgs(regions=["us-east-1"], ignore_checks=["W3005", "W1020"]))
    assert [f"{m.rule.id} {m.message}" for m in found] == []


@pytest.mark.skipif(sam_build.unavailable_reason() is not None, reason=str(sam_build.unavailable_reason()))
def test_sam_built_api_function_answers_ask_without_any_layer(
    doc: dict[str, Any], stack: SimpleNamespace, tmp_path: Path
) -> None:
    out = tmp_path / "localstack"
    localstack_build.materialise(localstack_build.plan(doc, out), out, only={"code/api"})
    built = sam_build.build(tmp_path / "build", "ApiFunction", out / "template.json")
    assert set(built) == {"ApiFunction"}  # no layer was built: none is needed
    function = tmp_path / "build" / "ApiFunction"
    assert (function / "app.py").is_file() and (function / "rag_autotune" / "ask.py").is_file()
    assert (function / "chalice" / "app.py").is_file() and not (function / "Makefile").exists()
    assert list((function / "pydantic_core").glob("_pydantic_core*.so"))  # compiled modules kept
    assert built["ApiFunction"] < 250 * 1024 * 1024

    assert not (function / "rag_autotune" / "tune").exists()  # the API's folder gets the serve layer alone
    runtime = tmp_path / "runtime"  # what the Lambda runtime itself provides
    for name in ("boto3", "botocore", "s3transfer", "python-dateutil", "six", "urllib3"):
        build_layer.copy_dist(name, runtime)
    event = json.loads((REPO / "tests" / "events" / "ask.json").read_text())
    script = (
        "import json, sys\n"
        "sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "import app\n"
        "resp = app.app(json.loads(sys.argv[3]), None)\n"
        "outside = sorted({m.split('.')[0] for m, mod in list(sys.modules.items())\n"
        "  if getattr(mod, '__file__', None) and 'site-packages' in mod.__file__})\n"
        "print(json.dumps({'status': resp['statusCode'], 'body': json.loads(resp['body']), 'outside': outside}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [str(build_layer.runtime_python()), "-S", "-c", script, str(function), str(runtime), json.dumps(event)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=function,  # Lambda's working directory is the task root
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["status"] == 200 and result["body"]["citations"], result
    assert result["outside"] == []  # nothing came from an installed site-packages
