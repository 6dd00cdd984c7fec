"""The nightly tune workflow in the embedded default: the same ASL file (infra/tune.asl.json) deployed to
moto's server and executed by moto's own Step Functions interpreter, its Lambda Task states running the real
handlers through the local Lambda runner (`lambdas.py`).

`deploy` must run in the process that hosts the moto server (ThreadedMotoServer): the runner patches moto's
Lambda backend in-process. The EventBridge rule is created as documentation of the schedule; moto stores it
but never fires it, so `scheduler.Scheduler` calls `start` itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError

from ..paths import ASL, TEMPLATE
from ..settings import Settings
from . import lambdas, moto_map
from .resources import load_template

STATE_MACHINE_TYPE = "AWS::Serverless::StateMachine"
STATE_MACHINE_NAME = "rag-autotune-tune"
RULE_NAME = "rag-autotune-nightly"
ROLE_NAME = "rag-autotune-local-states"
_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": ["states.amazonaws.com", "events.amazonaws.com"]},
            "Action": "sts:AssumeRole",
        }
    ],
}
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:]+)\}")


def _endpoint() -> str:
    url = os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        raise RuntimeError("AWS_ENDPOINT_URL is not set: the local workflow runs only against moto's server")
    return url.rstrip("/")


def enable_execution(endpoint: str | None = None) -> None:
    """Switch moto's Step Functions from recording executions to executing them. Also points moto's
    interpreter (which calls Lambda at localhost:$MOTO_PORT) at this server."""
    endpoint = endpoint or _endpoint()
    port = urlparse(endpoint).port
    if port:
        os.environ["MOTO_PORT"] = str(port)
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - local moto endpoint
        resp.read()


def state_machine_resource(template: dict[str, Any], asl: Path | None = None) -> tuple[str, dict[str, Any]]:
    """(logical id, resource) of the template's state machine: the one whose DefinitionUri names `asl`,
    else the only one."""
    machines = [
        (k, v)
        for k, v in (template.get("Resources") or {}).items()
        if isinstance(v, dict) and v.get("Type") == STATE_MACHINE_TYPE
    ]
    if asl is not None:
        named = [
            (k, v)
            for k, v in machines
            if Path(str((v.get("Properties") or {}).get("DefinitionUri", ""))).name == asl.name
        ]
        if len(named) == 1:
            return named[0]
    if len(machines) != 1:
        raise ValueError(f"expected one {STATE_MACHINE_TYPE} in the template, found {len(machines)}")
    return machines[0]


@dataclass(frozen=True)
class ScheduleEvent:
    expression: str
    rule_name: str | None  # the event's Name, if the template gives one
    input: str | None  # the event's Input (JSON text), if any


def _plain(value: Any, template: dict[str, Any]) -> str | None:
    """A plain scalar, or a `!Ref` to a Parameter's Default; None for anything else."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        param = (template.get("Parameters") or {}).get(value["Ref"])
        if isinstance(param, dict) and "Default" in param:
            return str(param["Default"])
    return None


def schedule_event(template_path: Path = TEMPLATE, asl: Path | None = ASL) -> ScheduleEvent | None:
    """The state machine's first Schedule (or ScheduleV2) event, resolved, if any."""
    template = load_template(template_path)
    _, resource = state_machine_resource(template, asl)
    for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
        props = (event or {}).get("Properties") or {}
        key = {"Schedule": "Schedule", "ScheduleV2": "ScheduleExpression"}.get(str(event.get("Type")))
        expression = _plain(props.get(key), template) if key else None
        if expression:
            return ScheduleEvent(expression, _plain(props.get("Name"), template), _plain(props.get("Input"), template))
    return None


def schedule(template_path: Path = TEMPLATE, asl: Path | None = ASL) -> str | None:
    """The state machine's schedule expression (for `scheduler.Scheduler`), if it has one."""
    event = schedule_event(template_path, asl)
    return event.expression if event else None


def _condition(name: str, template: dict[str, Any]) -> bool:
    """A template Condition of the form `!Equals [!Ref Param, value]`, with the parameters' defaults."""
    rule = ((template.get("Conditions") or {}).get(name) or {}).get("Fn::Equals")
    if not isinstance(rule, list) or len(rule) != 2:
        raise ValueError(f"Conditions.{name}: only !Equals [!Ref Param, value] is resolved locally")
    left, right = (_plain(v, template) for v in rule)
    return left is not None and left == right


def _resolve(
    name: str,
    value: Any,
    template: dict[str, Any],
    arns: dict[str, str],
    functions: dict[str, lambdas.LocalFunction],
    refs: dict[str, str] | None = None,
) -> str:
    """`!GetAtt F.Arn` → the installed ARN, `!Ref F` → its name, `!Ref X` → `refs[X]` (the bucket, the table,
    the region), `!Ref Param` → its Default, `!If [Condition, a, b]` → a or b, scalars as is."""
    if isinstance(value, dict) and len(value) == 1:
        ((fn_key, arg),) = value.items()
        if fn_key == "Fn::If":
            condition, then, otherwise = arg
            chosen = then if _condition(condition, template) else otherwise
            return _resolve(name, chosen, template, arns, functions, refs)
        if fn_key == "Ref" and refs and arg in refs:
            return refs[arg]
        if fn_key == "Fn::GetAtt":
            target, _, attr = arg.partition(".") if isinstance(arg, str) else (arg[0], ".", arg[1])
            if attr == "Arn" and target in arns:
                return arns[target]
        if fn_key == "Ref" and arg in functions:
            return functions[arg].function_name
    plain = _plain(value, template)
    if plain is not None:
        return plain
    raise ValueError(f"DefinitionSubstitutions.{name}: cannot resolve {value!r} locally")


def render_definition(
    template_path: Path,
    asl: Path,
    arns: dict[str, str],
    functions: dict[str, lambdas.LocalFunction],
    refs: dict[str, str] | None = None,
) -> str:
    """The ASL text with every ${Name} replaced from the state machine's DefinitionSubstitutions."""
    template = load_template(template_path)
    _, resource = state_machine_resource(template, asl)
    subs = (resource.get("Properties") or {}).get("DefinitionSubstitutions") or {}
    values = {k: _resolve(k, v, template, arns, functions, refs) for k, v in subs.items()}
    text = asl.read_text(encoding="utf-8")
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise ValueError(f"{asl.name}: no DefinitionSubstitutions for {missing}")
    text = _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
    json.loads(text)  # fail here, not in moto, if a substitution broke the JSON
    return text


def _resource_refs(template: dict[str, Any], settings: Settings) -> dict[str, str]:
    """`!Ref` values the local stack knows: the one bucket and the one table are the settings' names."""
    resources = template.get("Resources") or {}
    refs: dict[str, str] = {}
    for rtype, value in (("AWS::S3::Bucket", settings.bucket), ("AWS::DynamoDB::Table", settings.table)):
        ids = [k for k, v in resources.items() if isinstance(v, dict) and v.get("Type") == rtype]
        if len(ids) == 1:
            refs[ids[0]] = value
    return refs


def _find_state_machine(sfn: Any, name: str) -> str | None:
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return str(machine["stateMachineArn"])
    return None


def deploy(
    settings: Settings,
    template: Path = TEMPLATE,
    asl: Path = ASL,
    overrides: dict[str, str] | None = None,
    *,
    name: str | None = None,
    rule_name: str | None = None,
    function_names: dict[str, str] | None = None,
    schedule_rule: bool = True,
) -> str:
    """Install the template's functions in moto, create or update the state machine from the ASL file with
    its DefinitionSubstitutions resolved, and store the schedule rule. Idempotent. Returns the state
    machine ARN. `name` and `rule_name` default to the template's Name properties, else
    rag-autotune-tune and rag-autotune-nightly. The functions see the settings' bucket and table where the
    template's Environment says `!Ref` of the bucket or the table. `function_names` maps logical ids to the
    names the functions already have (a stack created them, see cfn.py); others are rag-autotune-<id>.
    `schedule_rule=False` leaves the rule alone (a stack made it, targeting this machine's ARN)."""
    template, asl = Path(template), Path(asl)
    doc = load_template(template)
    _, machine = state_machine_resource(doc, asl)
    name = name or _plain((machine.get("Properties") or {}).get("Name"), doc) or STATE_MACHINE_NAME
    enable_execution()
    moto_map.apply()
    refs = _resource_refs(doc, settings)
    functions = lambdas.functions_from_template(template, refs=refs)
    for logical_id, function_name in (function_names or {}).items():
        if logical_id in functions:
            functions[logical_id] = dataclasses.replace(functions[logical_id], function_name=function_name)
    arns = lambdas.install(functions, overrides, region=settings.region)
    definition = render_definition(template, asl, arns, functions, {**refs, "AWS::Region": settings.region})

    role = lambdas.ensure_role(boto3.client("iam", region_name=settings.region), ROLE_NAME, _TRUST)
    sfn = boto3.client("stepfunctions", region_name=settings.region)
    arn = _find_state_machine(sfn, name)
    if arn is None:
        try:
            arn = str(sfn.create_state_machine(name=name, definition=definition, roleArn=role)["stateMachineArn"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "StateMachineAlreadyExists":
                raise
            arn = _find_state_machine(sfn, name)
            if arn is None:
                raise
    sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role)

    event = schedule_event(template, asl) if schedule_rule else None
    if event:
        rule_name = rule_name or event.rule_name or RULE_NAME
        events = boto3.client("events", region_name=settings.region)
        events.put_rule(
            Name=rule_name,
            ScheduleExpression=event.expression,
            State="ENABLED",
            Description="Nightly tune (stored by moto, fired by rag_autotune.local.scheduler)",
        )
        events.put_targets(
            Rule=rule_name,
            Targets=[
                {
                    "Id": "tune",
                    "Arn": arn,
                    "RoleArn": role,
                    "Input": event.input or json.dumps({"trigger": "schedule"}),
                }
            ],
        )
    return arn


def start(
    sm_arn: str,
    run_id: str | None = None,
    trigger: str = "cli",
    *,
    extra: dict[str, Any] | None = None,
    region: str | None = None,
) -> str:
    """Start one execution named run_id (moto requires an explicit name) with input
    {"run_id", "trigger", **extra}. Returns the execution ARN."""
    run_id = run_id or time.strftime("run-%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.urandom(3).hex()}"
    sfn = boto3.client("stepfunctions", region_name=region or sm_arn.split(":")[3])
    resp = sfn.start_execution(
        stateMachineArn=sm_arn,
        name=run_id,
        input=json.dumps({"run_id": run_id, "trigger": trigger, **(extra or {})}),
    )
    return str(resp["executionArn"])


def wait(
    execution_arn: str,
    timeout_s: float,
    poll_s: float = 0.5,
    on_poll: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """describe_execution until the execution leaves RUNNING; TimeoutError after timeout_s."""
    sfn = boto3.client("stepfunctions", region_name=execution_arn.split(":")[3])
    deadline = time.monotonic() + timeout_s
    while True:
        desc: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if on_poll is not None:
            on_poll(desc)
        if desc["status"] != "RUNNING":
            return desc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{execution_arn} still RUNNING after {timeout_s:.0f} s")
        time.sleep(poll_s)
