"""The API runs without the tune and training code: functions/api/app.py, in a fresh process where importing
rag_autotune.tune or rag_autotune.training raises ImportError, serves /health, /ask and /dashboard from the
e2e stack (moto). This is what the serve layer, which ships without them, relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from rag_autotune.paths import REPO
from rag_autotune.versions import read_manifest

SCRIPT = """
import importlib.abc, json, sys

class Unimportable(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[:2] in (["rag_autotune", "tune"], ["rag_autotune", "training"]):
            raise ImportError(f"{name} is not in the serve layer")
        return None

sys.meta_path.insert(0, Unimportable())
try:
    import rag_autotune.tune
except ImportError:
    pass
else:
    raise SystemExit("the blocker let rag_autotune.tune through")
sys.path.insert(0, sys.argv[1])
import app

ask = json.loads(sys.argv[2])
events = {
    "ask": ask,
    "health": {**ask, "resource": "/health", "path": "/health", "httpMethod": "GET", "body": None,
               "requestContext": {**ask["requestContext"], "resourcePath": "/health", "httpMethod": "GET"}},
    "dashboard": {**ask, "resource": "/dashboard", "path": "/dashboard", "httpMethod": "GET", "body": None,
                  "requestContext": {**ask["requestContext"], "resourcePath": "/dashboard", "httpMethod": "GET"}},
}
out = {name: app.app(event, None) for name, event in events.items()}
loaded = sorted(m for m in sys.modules if m.split(".")[:2] in (["rag_autotune", "tune"], ["rag_autotune", "training"]))
print(json.dumps({name: [r["statusCode"], r["body"]] for name, r in out.items()} | {"loaded": loaded}))
"""


def test_the_api_serves_with_tune_and_training_unimportable(stack: SimpleNamespace, tmp_path: Path) -> None:
    event = (REPO / "tests" / "events" / "ask.json").read_text()
    env = {**os.environ, "RAG_CACHE_DIR": str(tmp_path / "cache")}  # a cold process: it loads the pair itself
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REPO / "functions" / "api"), event],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    status, body = result["health"]
    manifest = read_manifest(stack.rt.store)
    assert manifest is not None
    live = manifest[0].live
    assert status == 200 and json.loads(body)["model_version"] == live.model_version, body
    status, body = result["ask"]
    assert status == 200 and json.loads(body)["citations"], body
    assert result["dashboard"][0] in (200, 404)  # a page or the JSON "no dashboard yet": never a 500
    assert result["loaded"] == []
