"""The local Lambda runner: template.yaml's functions, created in the moto server of this process, and run
as the real Python handlers when anything (Step Functions included) invokes them.

moto runs a function only through Docker (or answers a canned string). `install` replaces
`moto.awslambda.models.LambdaBackend.invoke` in this process, which is where `ThreadedMotoServer` serves
from, so an invoke of an installed function runs its handler file instead. Each invocation is a fresh
subprocess (`python -m rag_autotune.local.invoke FILE FUNC`), like a Lambda execution environment: the
train step's torch never loads into the serving process, and a crash or timeout kills only that process.

A raised exception comes back the way Lambda returns it: the payload `{"errorType": "ClassName", ...}` with
the header `x-amz-function-error`, so an ASL `Catch` on `ErrorEquals: ["ClassName"]` routes on it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from .child import die_with_parent
from .resources import load_template

LOG = logging.getLogger(__name__)

FUNCTION_TYPE = "AWS::Serverless::Function"
ROLE_NAME = "rag-autotune-local-lambda"
NAME_PREFIX = "rag-autotune-"
_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # layers/serve/python: where rag_autotune imports from
# On AWS a function has cores of its own; here the tune's steps (the train step's torch on every core) share the
# laptop with the API, so they run only on CPU time the API and moto leave idle (see invoke.yield_cpu).


@dataclass(frozen=True)
class LocalFunction:
    """One template function, as the local runner needs it."""

    logical_id: str
    path: Path  # the handler's module file
    func: str  # the handler's function name in that file
    env: dict[str, str] = field(default_factory=dict)  # the template's plain-string Environment variables
    timeout_s: float = 3.0
    memory_mb: int = 128
    function_name: str = ""  # the name created in moto

    @property
    def target(self) -> str:
        return f"{self.path}:{self.func}"


def _handler_file(code_dir: Path, handler: str) -> tuple[Path, str]:
    """ "prepare.handler" → (code_dir/prepare.py, "handler"); "pkg.mod.fn" → (code_dir/pkg/mod.py, "fn")."""
    module, sep, func = handler.rpartition(".")
    if not sep or not module or not func:
        raise ValueError(f"handler {handler!r} is not MODULE.FUNCTION")
    return code_dir / (module.replace(".", "/") + ".py"), func


def _plain_env(refs: dict[str, str], *blocks: Any) -> dict[str, str]:
    """Environment variables that are plain values, plus `!Ref X` where refs knows X (later blocks win)."""
    env: dict[str, str] = {}
    for block in blocks:
        variables = ((block or {}).get("Environment") or {}).get("Variables") or {}
        for key, value in variables.items():
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                env[str(key)] = str(value)
            elif isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in refs:
                env[str(key)] = refs[value["Ref"]]
    return env


def functions_from_template(template_path: Path, refs: dict[str, str] | None = None) -> dict[str, LocalFunction]:
    """logical id → LocalFunction for every AWS::Serverless::Function in the template.

    env holds the Environment variables that are plain values; a `!Ref X` is kept only when `refs` maps X
    (deploy maps the bucket and the table to the settings' names). Any other intrinsic is left out, so the
    variable comes from this process's environment instead.

    Zip functions: CodeUri + Handler. Image functions: ImageConfig.Command[0], beside Metadata.Dockerfile.
    Globals.Function supplies defaults (Timeout, MemorySize, CodeUri, Handler, Environment), as SAM does.
    """
    template_path = Path(template_path).resolve()
    doc = load_template(template_path)
    root = template_path.parent
    globals_fn = (doc.get("Globals") or {}).get("Function") or {}
    out: dict[str, LocalFunction] = {}
    for logical_id, resource in (doc.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != FUNCTION_TYPE:
            continue
        props = resource.get("Properties") or {}
        merged = {**globals_fn, **props}
        if props.get("PackageType", globals_fn.get("PackageType")) == "Image":
            context = (resource.get("Metadata") or {}).get("DockerContext")
            command = (props.get("ImageConfig") or {}).get("Command") or []
            if not context or not command:
                raise ValueError(
                    f"{logical_id}: an Image function needs Metadata.DockerContext and ImageConfig.Command"
                )
            # The handler sits beside the Dockerfile (the context may be the repository root).
            dockerfile = str((resource.get("Metadata") or {}).get("Dockerfile") or "Dockerfile")
            path, func = _handler_file((root / str(context) / dockerfile).parent, str(command[0]))
        else:
            code_uri, handler = merged.get("CodeUri"), merged.get("Handler")
            if not isinstance(code_uri, str) or not isinstance(handler, str):
                raise ValueError(f"{logical_id}: needs a local CodeUri and a Handler")
            path, func = _handler_file(root / code_uri, handler)
        name = props.get("FunctionName")
        out[logical_id] = LocalFunction(
            logical_id=logical_id,
            path=path,
            func=func,
            env=_plain_env(refs or {}, globals_fn, props),
            timeout_s=float(merged.get("Timeout", 3)),
            memory_mb=int(merged.get("MemorySize", 128)),
            function_name=name if isinstance(name, str) else f"{NAME_PREFIX}{logical_id}",
        )
    return out


# ---------------------------------------------------------------------------------------------- running


_busy: dict[str, set[int]] = {}  # logical id → the sandboxes (cache folders) its running invocations hold
_busy_lock = threading.Lock()


@contextlib.contextmanager
def _sandbox(fn: LocalFunction) -> Iterator[int]:
    """The lowest-numbered sandbox of `fn` that no running invocation holds. On Lambda each concurrent
    invocation (a Map's items) has an execution environment, and a /tmp, of its own; one after another they
    reuse a warm one."""
    with _busy_lock:
        held = _busy.setdefault(fn.logical_id, set())
        slot = next(i for i in range(len(held) + 1) if i not in held)
        held.add(slot)
    try:
        yield slot
    finally:
        with _busy_lock:
            _busy[fn.logical_id].discard(slot)


def run_local(fn: LocalFunction, event: bytes | str, function_arn: str = "") -> tuple[bytes, bool]:
    """Run one invocation in a fresh subprocess, with its sandbox's cache folder. Returns (payload JSON bytes,
    errored)."""
    with _sandbox(fn) as slot:
        return _run(fn, event, function_arn, slot)


def _run(fn: LocalFunction, event: bytes | str, function_arn: str, slot: int) -> tuple[bytes, bool]:
    env = {**os.environ, **fn.env}
    # Each function has its own /tmp on Lambda, and so does each of its concurrent invocations: one step never
    # reads another's cache, and two map items never write the same folder.
    cache = Path(env.get("RAG_CACHE_DIR", "/tmp/rag-autotune")) / "lambda" / fn.logical_id
    env["RAG_CACHE_DIR"] = str(cache if slot == 0 else cache.with_name(f"{fn.logical_id}-{slot}"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
    cmd = [
        sys.executable,
        "-m",
        "rag_autotune.local.invoke",
        str(fn.path),
        fn.func,
        "--function-name",
        fn.function_name or fn.logical_id,
        "--timeout",
        str(fn.timeout_s),
        "--memory",
        str(fn.memory_mb),
        "--yield-cpu",
    ]
    if function_arn:
        cmd += ["--function-arn", function_arn]
    data = event.encode("utf-8") if isinstance(event, str) else (event or b"{}")
    try:
        # stderr is not captured: the handler's logs pass straight through to this process's stderr.
        proc = subprocess.run(
            cmd,
            input=data,
            stdout=subprocess.PIPE,
            env=env,
            timeout=fn.timeout_s,
            check=False,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - a prctl call, no Python state
        )
    except subprocess.TimeoutExpired:
        return _error("Sandbox.Timedout", f"Task timed out after {fn.timeout_s:.2f} seconds"), True
    out = proc.stdout.strip()
    if proc.returncode in (0, 1) and out:
        try:
            json.loads(out)
        except ValueError:
            pass
        else:
            return out, proc.returncode == 1
    return _error("Runtime.ExitError", f"RequestId: local Error: Runtime exited with status {proc.returncode}"), True


def _error(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode("utf-8")


# ---------------------------------------------------------------------------------------------- moto patch

_registry: dict[str, LocalFunction] = {}  # unqualified function ARN → what runs when it is invoked
_registry_lock = threading.Lock()
_original_invoke: dict[type, Any] = {}


def _local_invoke(
    self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
) -> str | bytes | None:
    fn_model = self.get_function(function_name, qualifier)  # raises moto's own not-found error
    arn = str(fn_model.function_arn).split(":function:")[0] + ":function:" + str(fn_model.function_name)
    with _registry_lock:
        local = _registry.get(arn)
    if local is None:  # not ours: moto's own behaviour
        original = next(_original_invoke[c] for c in type(self).__mro__ if c in _original_invoke)
        return original(self, function_name, qualifier, body, headers, response_headers)  # type: ignore[no-any-return]
    invocation_type = (headers or {}).get("X-Amz-Invocation-Type") or (headers or {}).get(
        "x-amz-invocation-type", "RequestResponse"
    )
    if invocation_type == "DryRun":
        return b""
    if invocation_type == "Event":
        threading.Thread(
            target=run_local, args=(local, body or b"{}", arn), daemon=True, name=f"lambda-{local.logical_id}"
        ).start()
        return b""
    payload, errored = run_local(local, body or b"{}", arn)
    if errored:
        response_headers["x-amz-function-error"] = "Unhandled"
    response_headers["x-amz-executed-version"] = "$LATEST"
    response_headers["Content-Length"] = str(len(payload))
    return payload


def _patch_moto() -> None:
    """Idempotent: replace invoke on moto's Lambda backends (the plain one and the no-Docker one)."""
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda_simple.models import LambdaSimpleBackend

    with _registry_lock:
        for cls in (LambdaBackend, LambdaSimpleBackend):
            current = cls.__dict__.get("invoke")
            if current is not None and current is not _local_invoke:
                _original_invoke[cls] = current
                cls.invoke = _local_invoke  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------- install


def _tiny_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("placeholder.py", "# the local runner executes the repository's handler file instead\n")
    return buf.getvalue()


def ensure_role(iam: Any, name: str = ROLE_NAME, trust: dict[str, Any] | None = None) -> str:
    """A dummy IAM role's ARN (moto wants one on every function and state machine), created once."""
    try:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchEntity":
            raise
    try:
        doc = json.dumps(trust or _TRUST)
        return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=doc)["Role"]["Arn"])
    except ClientError as exc:  # created concurrently
        if exc.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
            raise
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])


def _check_in_process(arn: str, name: str) -> None:
    """The patch only works when the moto server boto3 talks to runs in this process."""
    from moto.awslambda.utils import get_backend

    region, account = arn.split(":")[3], arn.split(":")[4]
    try:
        get_backend(account, region).get_function(name)
    except Exception as exc:
        raise RuntimeError(
            "the local Lambda runner must run in the process that hosts the moto server "
            f"(AWS_ENDPOINT_URL={os.environ.get('AWS_ENDPOINT_URL')}); {name} is not in this process's moto"
        ) from exc


def _override(fn: LocalFunction, target: str) -> LocalFunction:
    file, sep, func = target.rpartition(":")
    if not sep or not file or not func:
        raise ValueError(f"override {target!r} is not path/to/file.py:function")
    return LocalFunction(
        fn.logical_id, Path(file).resolve(), func, fn.env, fn.timeout_s, fn.memory_mb, fn.function_name
    )


def install(
    functions: dict[str, LocalFunction],
    overrides: dict[str, str] | None = None,
    *,
    region: str | None = None,
) -> dict[str, str]:
    """Create each function in the moto server boto3 points at (idempotent) and route its invocations to
    the local runner. `overrides` maps a logical id to another "path/to/file.py:func" (fault injection).
    Returns logical id → function ARN."""
    overrides = overrides or {}
    unknown = set(overrides) - set(functions)
    if unknown:
        raise KeyError(f"overrides for functions the template does not declare: {sorted(unknown)}")
    _patch_moto()
    region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    lam = boto3.client("lambda", region_name=region)
    role = ensure_role(boto3.client("iam", region_name=region))
    arns: dict[str, str] = {}
    for logical_id, fn in functions.items():
        if logical_id in overrides:
            fn = _override(fn, overrides[logical_id])
        name = fn.function_name or f"{NAME_PREFIX}{logical_id}"
        try:
            arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            arn = lam.create_function(
                FunctionName=name,
                Runtime="python3.11",
                Role=role,
                Handler=f"{fn.path.stem}.{fn.func}",
                Code={"ZipFile": _tiny_zip()},
                Timeout=max(1, int(fn.timeout_s)),
                MemorySize=fn.memory_mb,
                Environment={"Variables": fn.env},
            )["FunctionArn"]
        _check_in_process(arn, name)
        with _registry_lock:
            _registry[arn] = fn
        arns[logical_id] = arn
    return arns
