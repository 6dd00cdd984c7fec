"""One local Lambda invocation, in its own process: `python -m rag_autotune.local.invoke FILE FUNC`.

The event is JSON on stdin. The result is JSON on stdout; everything the handler prints or logs goes to
stderr (file descriptor 1 is pointed at stderr while the handler runs), so logs pass through and never mix
with the result. A raised exception becomes the payload Lambda returns for a function error:
`{"errorType": "ClassName", "errorMessage": "...", "stackTrace": [...]}` on stdout, with exit status 1.
Exit status 0 means stdout is the handler's result; anything else with no JSON means the process died.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import traceback
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any


class LocalContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, function_name: str, function_arn: str, timeout_s: float, memory_mb: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_module(path: Path) -> ModuleType:
    """Import a handler file by path, its folder first on sys.path (Lambda's task root)."""
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def error_payload(exc: BaseException, skip: int = 0) -> dict[str, Any]:
    tb = exc.__traceback__
    for _ in range(skip):  # drop this runner's own frames
        tb = tb.tb_next if tb is not None else None
    return {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": traceback.format_tb(tb)}


def run(path: Path, func: str, event: Any, context: LocalContext) -> tuple[Any, bool]:
    """(result, errored)."""
    try:
        handler = getattr(load_module(path), func)
    except Exception as exc:  # Lambda reports import failures as Runtime.ImportModuleError
        traceback.print_exc()
        payload = error_payload(exc)
        payload.update(errorType="Runtime.ImportModuleError", errorMessage=f"{type(exc).__name__}: {exc}")
        return payload, True
    try:
        return handler(event, context), False
    except Exception as exc:
        traceback.print_exc()
        return error_payload(exc, skip=1), True


def yield_cpu() -> None:
    """The lowest CPU priority for this process and the threads it starts (nice 19): a request thread of the
    API or moto that wakes up takes the core from it at once, yet it still runs on a busy machine. (SCHED_IDLE
    would starve it there: a step would outlive its timeout behind any other busy process.)"""
    os.nice(19 - os.nice(0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rag_autotune.local.invoke")
    parser.add_argument("file", type=Path)
    parser.add_argument("func")
    parser.add_argument("--function-name", default="local")
    parser.add_argument("--function-arn", default="arn:aws:lambda:us-east-1:123456789012:function:local")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--memory", type=int, default=1024)
    parser.add_argument("--yield-cpu", action="store_true", help="run only on CPU time others leave idle")
    args = parser.parse_args(argv)
    if args.yield_cpu:
        yield_cpu()

    # The result channel is the original stdout; the handler's own stdout goes to stderr.
    result_fd = os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    raw = sys.stdin.read()
    event = json.loads(raw) if raw.strip() else {}
    context = LocalContext(args.function_name, args.function_arn, args.timeout, args.memory)
    result, errored = run(args.file.resolve(), args.func, event, context)
    try:
        body = json.dumps(result)
    except (TypeError, ValueError) as exc:
        body = json.dumps({"errorType": "Runtime.MarshalError", "errorMessage": f"Unable to marshal response: {exc}"})
        errored = True
    sys.stderr.flush()
    with os.fdopen(result_fd, "w", encoding="utf-8") as out:
        out.write(body)
    return 1 if errored else 0


if __name__ == "__main__":
    raise SystemExit(main())
