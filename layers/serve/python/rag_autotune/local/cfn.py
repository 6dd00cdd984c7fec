"""template.yaml as a CloudFormation stack in moto's server: the embedded default builds from the same file
that `sam deploy` deploys.

    package     what `sam package` does: local CodeUri/ContentUri/DefinitionUri folders and files become
                objects in a code bucket, the image function gets a placeholder ImageUri
    transform   aws-sam-translator, offline (no managed-policy lookups, a fixed region)
    localize    the physical names the local settings use: bucket, table, and one function name per id
    create      moto's CloudFormation creates the stack

moto 5.2.5's CloudFormation leaves gaps. Each is closed by one named step below that calls the service API
with the values the transformed template holds; no step declares a resource of its own.

    rest_api        RestApi's Body (the routes) is ignored, so Deployment, Stage, ApiKey, UsagePlan and
                    UsagePlanKey cannot be created by the stack: they are taken out before create, and then
                    made with put_rest_api(Body), create_deployment, create_stage, create_api_key,
                    create_usage_plan and create_usage_plan_key
    bucket          VersioningConfiguration, PublicAccessBlockConfiguration, OwnershipControls,
                    LifecycleConfiguration and NotificationConfiguration (EventBridge) are ignored, and
                    AWS::S3::BucketPolicy is not supported (its statements are put, except a TLS-only Deny:
                    the local endpoint is plain HTTP)
    table           TimeToLiveSpecification and PointInTimeRecoverySpecification are ignored
    functions       Layers are ignored (update_function_configuration). TracingConfig and EphemeralStorage
                    are ignored as well, and moto's update ignores them too: they stay unclosed (harmless
                    locally; the tests check them on the transformed template)
    state_machine   the state machine lands in the backend that does not execute, DefinitionS3Location and
                    DefinitionSubstitutions are ignored: `sfn.deploy` creates it in the executing backend
                    with the substitutions resolved, and registers the functions with the local Lambda runner

    event_sources   an SQS AWS::Lambda::EventSourceMapping would make moto invoke the function inside the
                    request that sent the message (the S3 PUT), once per message and without the batching
                    window: they are taken out before create, and `queue_source.QueuePoller` delivers the
                    batches instead (`LocalStack.queue_sources` says what each polls and invokes)

moto never fires the schedule rule (`scheduler.Scheduler` does) and never runs an image (the train handler
runs in the local runner like the others)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ..paths import ASL, TEMPLATE
from ..settings import Settings
from .resources import load_template

LOG = logging.getLogger(__name__)

STACK_NAME = "rag-autotune"
CODE_BUCKET = "rag-autotune-local-packages"
LOCAL_IMAGE_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-autotune-train:local"
_API_TYPES = (
    "AWS::ApiGateway::Deployment",
    "AWS::ApiGateway::Stage",
    "AWS::ApiGateway::ApiKey",
    "AWS::ApiGateway::UsagePlan",
    "AWS::ApiGateway::UsagePlanKey",
)
_SKIP_IN_ZIP = ("__pycache__", ".egg-info", ".pyc")


# ---------------------------------------------------------------------------------------------- package


def _zip_folder(folder: Path) -> bytes:
    """A deterministic zip of folder (no caches, no egg-info), as `sam package` would upload it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            if any(part in rel for part in _SKIP_IN_ZIP):
                continue
            info = zipfile.ZipInfo(rel, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    return buf.getvalue()


def _replace_local(props: dict[str, Any], key: str, upload: Any, root: Path) -> None:
    """props[key], a local path, becomes the s3:// URI `upload(path)` returns; S3 URIs stay as they are."""
    value = props.get(key)
    if isinstance(value, str) and not value.startswith("s3://"):
        props[key] = upload(root / value)


def package(doc: dict[str, Any], root: Path, bucket: str = CODE_BUCKET) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(the SAM template with S3 URIs in place of local paths, {key: bytes to upload})."""
    doc = copy.deepcopy(doc)
    uploads: dict[str, bytes] = {}

    def put(data: bytes, suffix: str) -> str:
        key = f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
        uploads[key] = data
        return f"s3://{bucket}/{key}"

    globals_fn = (doc.get("Globals") or {}).get("Function") or {}
    for resource in (doc.get("Resources") or {}).values():
        props = resource.setdefault("Properties", {})
        rtype = resource.get("Type")
        if rtype == "AWS::Serverless::Function":
            if props.get("PackageType", globals_fn.get("PackageType")) == "Image":
                props.setdefault("ImageUri", LOCAL_IMAGE_URI)
            elif isinstance(props.get("CodeUri", globals_fn.get("CodeUri")), str):
                code_uri = props.get("CodeUri", globals_fn.get("CodeUri"))
                if not str(code_uri).startswith("s3://"):
                    props["CodeUri"] = put(_zip_folder(root / code_uri), ".zip")
        elif rtype == "AWS::Serverless::LayerVersion":
            _replace_local(props, "ContentUri", lambda path: put(_zip_folder(path), ".zip"), root)
        elif rtype == "AWS::Serverless::StateMachine":
            _replace_local(props, "DefinitionUri", lambda path: put(path.read_bytes(), ".json"), root)
    return doc, uploads


# ---------------------------------------------------------------------------------------------- transform


class StaticManagedPolicyLoader:
    """The translator asks IAM for AWS managed policy ARNs only when a policy is named by a bare name. This
    template names none (it uses SAM policy templates and inline statements), so an empty map suffices and
    the transform needs no AWS call."""

    def load(self) -> dict[str, str]:
        return {}


def parameter_values(doc: dict[str, Any], overrides: dict[str, str] | None = None) -> dict[str, str]:
    values = {k: str(v["Default"]) for k, v in (doc.get("Parameters") or {}).items() if "Default" in v}
    return {**values, **(overrides or {})}


def transform(
    doc: dict[str, Any], parameters: dict[str, str] | None = None, region: str = "us-east-1"
) -> dict[str, Any]:
    """SAM → plain CloudFormation, offline. `doc` must already be packaged (S3 URIs, see `package`)."""
    from samtranslator.translator.transform import transform as sam_transform

    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # feature-toggle chatter
    saved = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region  # the translator's ARN generator reads boto3's region
    try:
        out: dict[str, Any] = sam_transform(
            copy.deepcopy(doc), parameter_values(doc, parameters), StaticManagedPolicyLoader()
        )
    finally:
        if saved is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = saved
    return out


def transformed_template(
    template: Path = TEMPLATE, parameters: dict[str, str] | None = None, region: str = "us-east-1"
) -> dict[str, Any]:
    """The plain CloudFormation `sam package` + the SAM transform would produce (code bucket: CODE_BUCKET)."""
    packaged, _ = package(load_template(template), Path(template).resolve().parent)
    return transform(packaged, parameters, region)


# ---------------------------------------------------------------------------------------------- localize


def _of_type(cfn: dict[str, Any], rtype: str) -> list[str]:
    return [k for k, v in cfn["Resources"].items() if v.get("Type") == rtype]


def function_names(cfn: dict[str, Any], stack_name: str) -> dict[str, str]:
    """One fixed name per function, `<stack>-<logical id>`: the local runner registers them by name."""
    return {k: f"{stack_name}-{k}"[:64] for k in _of_type(cfn, "AWS::Lambda::Function")}


def localize(
    cfn: dict[str, Any], settings: Settings, stack_name: str, state_machine_name: str | None = None
) -> dict[str, Any]:
    """The physical names of the local settings: the one bucket (RAG_BUCKET), the one table (RAG_TABLE),
    `<stack>-<id>` for functions, and (for tests sharing one moto) another state machine name."""
    cfn = copy.deepcopy(cfn)
    if state_machine_name:  # the tune's; each other machine gets it with its own name's last word appended
        for logical_id in _of_type(cfn, "AWS::StepFunctions::StateMachine"):
            props = cfn["Resources"][logical_id]["Properties"]
            own = str(props.get("StateMachineName", ""))
            tune = not own or own == "rag-autotune-tune"
            props["StateMachineName"] = state_machine_name if tune else f"{state_machine_name}-{own.rsplit('-', 1)[-1]}"
    for rtype, key, value in (
        ("AWS::S3::Bucket", "BucketName", settings.bucket),
        ("AWS::DynamoDB::Table", "TableName", settings.table),
    ):
        ids = _of_type(cfn, rtype)
        if len(ids) != 1:
            raise ValueError(f"expected one {rtype} in the template, found {ids}")
        cfn["Resources"][ids[0]]["Properties"][key] = value
    for logical_id, name in function_names(cfn, stack_name).items():
        cfn["Resources"][logical_id]["Properties"]["FunctionName"] = name
    return cfn


def _references(value: Any) -> set[str]:
    """Logical ids a value refers to (Ref, Fn::GetAtt, ${X} / ${X.Attr} in Fn::Sub)."""
    import re

    found: set[str] = set()
    if isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else str(arg).split(".")[0])
            elif key == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", str(text))}
                if isinstance(arg, list):
                    found |= _references(arg[1])
            else:
                found |= _references(arg)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def split_api_resources(cfn: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Take Deployment, Stage, ApiKey, UsagePlan, UsagePlanKey out of the template (moto ignores the RestApi's
    Body, so a Deployment has no methods and fails), with the outputs that refer to them.
    Returns (template for moto, the removed resources, the removed outputs)."""
    cfn = copy.deepcopy(cfn)
    removed = {k: cfn["Resources"].pop(k) for k in [k for t in _API_TYPES for k in _of_type(cfn, t)]}
    for resource in cfn["Resources"].values():
        depends = resource.get("DependsOn")
        if isinstance(depends, str):
            depends = [depends]
        if depends:
            kept = [d for d in depends if d not in removed]
            if kept:
                resource["DependsOn"] = kept
            else:
                resource.pop("DependsOn")
    outputs = cfn.get("Outputs") or {}
    removed_outputs = {k: outputs.pop(k) for k in [k for k, v in outputs.items() if _references(v) & set(removed)]}
    still = {k for k, v in cfn["Resources"].items() if _references(v) & set(removed)}
    if still:
        raise ValueError(f"resources refer to API resources moto cannot create: {sorted(still)}")
    return cfn, removed, removed_outputs


def split_event_sources(cfn: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Take the SQS event source mappings out of the template: (template for moto, the mappings)."""
    cfn = copy.deepcopy(cfn)
    ids = [
        k
        for k in _of_type(cfn, "AWS::Lambda::EventSourceMapping")
        if _is_queue_arn(cfn, cfn["Resources"][k]["Properties"].get("EventSourceArn"))
    ]
    removed = {k: cfn["Resources"].pop(k) for k in ids}
    still = {k for k, v in cfn["Resources"].items() if _references(v) & set(removed)}
    if still:
        raise ValueError(f"resources refer to event source mappings taken out for moto: {sorted(still)}")
    return cfn, removed


def _is_queue_arn(cfn: dict[str, Any], value: Any) -> bool:
    """`!GetAtt Q.Arn` of an AWS::SQS::Queue Q."""
    target = (value or {}).get("Fn::GetAtt") if isinstance(value, dict) else None
    name = (target[0] if isinstance(target, list) else str(target).split(".")[0]) if target else None
    return bool(name) and (cfn["Resources"].get(name) or {}).get("Type") == "AWS::SQS::Queue"


# ---------------------------------------------------------------------------------------------- resolve


@dataclass
class Resolver:
    """Resolves the intrinsics the named steps meet, from the created stack's physical ids."""

    region: str
    account: str
    stack_name: str
    parameters: dict[str, str]
    physical: dict[str, str]  # logical id → physical id
    types: dict[str, str]  # logical id → resource type

    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
        }.get(name)

    def ref(self, name: str) -> str:
        value = self.pseudo(name)
        if value is None:
            value = self.parameters.get(name) if name in self.parameters else self.physical.get(name)
        if value is None:
            raise KeyError(f"cannot resolve Ref {name}")
        return value

    def get_att(self, name: str, attr: str) -> str:
        rtype = self.types.get(name)
        if rtype == "AWS::Lambda::Function" and attr == "Arn":
            return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.physical[name]}"
        if rtype == "AWS::S3::Bucket" and attr == "Arn":
            return f"arn:aws:s3:::{self.physical[name]}"
        if rtype == "AWS::DynamoDB::Table" and attr == "Arn":
            return f"arn:aws:dynamodb:{self.region}:{self.account}:table/{self.physical[name]}"
        if rtype == "AWS::StepFunctions::StateMachine" and attr == "Arn":
            return self.physical[name]
        if rtype == "AWS::ApiGateway::RestApi" and attr == "RootResourceId":
            return str(
                boto3.client("apigateway", region_name=self.region).get_rest_api(restApiId=self.physical[name])[
                    "rootResourceId"
                ]
            )
        raise KeyError(f"cannot resolve Fn::GetAtt {name}.{attr} locally")

    def __call__(self, value: Any) -> Any:
        import re

        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                name, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.get_att(name, attr)
            if key == "Fn::Sub":
                text, local = (arg[0], self(arg[1])) if isinstance(arg, list) else (arg, {})

                def sub(m: re.Match[str]) -> str:
                    token = m.group(1)
                    if token in local:
                        return str(local[token])
                    if "." in token and not token.startswith("AWS::"):
                        return self.get_att(*token.split(".", 1))
                    return self.ref(token)

                return re.sub(r"\$\{([^}!]+)\}", sub, str(text))
            if key == "Fn::Join":
                return str(arg[0]).join(str(self(v)) for v in arg[1])
        return {k: self(v) for k, v in value.items()}


# ---------------------------------------------------------------------------------------------- create


@dataclass(frozen=True)
class QueueSource:
    """An SQS event source mapping of the template, resolved: what `queue_source.QueuePoller` stands in for."""

    queue_url: str
    function_name: str
    batch_size: int
    window_s: float
    report_failures: bool  # FunctionResponseTypes: [ReportBatchItemFailures]


@dataclass
class LocalStack:
    stack_name: str
    outputs: dict[str, str]
    physical: dict[str, str]  # logical id → physical id (the API resources made by the rest_api step included)
    state_machine_arn: str
    function_arns: dict[str, str] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)  # the named steps that ran
    queue_sources: list[QueueSource] = field(default_factory=list)


def _create_stack(cfn_client: Any, name: str, body: dict[str, Any], timeout_s: float = 120) -> None:
    cfn_client.create_stack(
        StackName=name,
        TemplateBody=json.dumps(body),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    deadline = time.monotonic() + timeout_s
    while True:
        stack = cfn_client.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"stack {name} still {stack['StackStatus']} after {timeout_s:.0f} s")
        time.sleep(0.2)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        failed = [
            f"{e.get('LogicalResourceId')}: {e.get('ResourceStatusReason')}"
            for e in cfn_client.describe_stack_events(StackName=name)["StackEvents"]
            if "FAILED" in str(e.get("ResourceStatus"))
        ]
        raise RuntimeError(f"stack {name}: {stack['StackStatus']} {stack.get('StackStatusReason')} {failed}")


def _stack_exists(cfn_client: Any, name: str) -> bool:
    try:
        status = cfn_client.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    except ClientError:
        return False
    return str(status) != "DELETE_COMPLETE"


def _ensure_code_bucket(s3: Any, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)


# ---------------------------------------------------------------------------------------------- named steps


def _for_moto(body: dict[str, Any]) -> dict[str, Any]:
    """moto's put_rest_api needs uri and httpMethod on every integration; the CORS preflight's MOCK
    integrations have neither (they are not needed on AWS)."""
    body = copy.deepcopy(body)
    for ops in (body.get("paths") or {}).values():
        for op in ops.values():
            integration = op.get("x-amazon-apigateway-integration") if isinstance(op, dict) else None
            if isinstance(integration, dict):
                integration.setdefault("uri", "")
                integration.setdefault("httpMethod", "POST")
    return body


def step_rest_api(cfn: dict[str, Any], removed: dict[str, Any], resolve: Resolver) -> None:
    """The routes from the RestApi's Body, then Deployment → Stage → ApiKey → UsagePlan → UsagePlanKey."""
    apigw = boto3.client("apigateway", region_name=resolve.region)
    for api_id in _of_type(cfn, "AWS::ApiGateway::RestApi"):
        body = cfn["Resources"][api_id]["Properties"].get("Body")
        rest_api_id = resolve.physical[api_id]
        if body and not apigw.get_stages(restApiId=rest_api_id).get("item"):
            apigw.put_rest_api(
                restApiId=rest_api_id, mode="overwrite", body=json.dumps(_for_moto(resolve(body))).encode()
            )
    order = {t: i for i, t in enumerate(_API_TYPES)}
    for logical_id, resource in sorted(removed.items(), key=lambda kv: order[kv[1]["Type"]]):
        rtype, props = resource["Type"], resolve(resource.get("Properties") or {})
        if rtype == "AWS::ApiGateway::Deployment":
            dep = apigw.create_deployment(restApiId=props["RestApiId"], description=props.get("Description", ""))
            resolve.physical[logical_id] = dep["id"]
        elif rtype == "AWS::ApiGateway::Stage":
            apigw.create_stage(
                restApiId=props["RestApiId"],
                stageName=props["StageName"],
                deploymentId=props["DeploymentId"],
                tracingEnabled=bool(props.get("TracingEnabled", False)),
            )
            resolve.physical[logical_id] = props["StageName"]
        elif rtype == "AWS::ApiGateway::ApiKey":
            key = apigw.create_api_key(
                name=props.get("Name") or f"{resolve.stack_name}-{logical_id}",
                enabled=bool(props.get("Enabled", True)),
                stageKeys=[
                    {"restApiId": k["RestApiId"], "stageName": k["StageName"]} for k in props.get("StageKeys", [])
                ],
            )
            resolve.physical[logical_id] = key["id"]
        elif rtype == "AWS::ApiGateway::UsagePlan":
            kwargs: dict[str, Any] = {
                "name": props.get("UsagePlanName") or f"{resolve.stack_name}-{logical_id}",
                "apiStages": [{"apiId": s["ApiId"], "stage": s["Stage"]} for s in props.get("ApiStages", [])],
            }
            if props.get("Description"):
                kwargs["description"] = props["Description"]
            if props.get("Throttle"):
                kwargs["throttle"] = {
                    "rateLimit": float(props["Throttle"]["RateLimit"]),
                    "burstLimit": int(props["Throttle"]["BurstLimit"]),
                }
            if props.get("Quota"):
                kwargs["quota"] = {"limit": int(props["Quota"]["Limit"]), "period": props["Quota"]["Period"]}
            resolve.physical[logical_id] = apigw.create_usage_plan(**kwargs)["id"]
        elif rtype == "AWS::ApiGateway::UsagePlanKey":
            apigw.create_usage_plan_key(
                usagePlanId=props["UsagePlanId"], keyId=props["KeyId"], keyType=props.get("KeyType", "API_KEY")
            )
            resolve.physical[logical_id] = f"{props['UsagePlanId']}:{props['KeyId']}"


def step_bucket(cfn: dict[str, Any], resolve: Resolver) -> None:
    """Versioning, public access block, ownership controls, lifecycle, EventBridge notifications and the bucket
    policy."""
    s3 = boto3.client("s3", region_name=resolve.region)
    for logical_id in _of_type(cfn, "AWS::S3::Bucket"):
        props = resolve(cfn["Resources"][logical_id].get("Properties") or {})
        bucket = resolve.physical[logical_id]
        if "VersioningConfiguration" in props:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=props["VersioningConfiguration"])
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
        if "OwnershipControls" in props:
            s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=props["OwnershipControls"])
        notifications = props.get("NotificationConfiguration") or {}
        if (notifications.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled"):
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        rules = (props.get("LifecycleConfiguration") or {}).get("Rules")
        if rules:
            api_rules = []
            for rule in rules:
                api_rule = {k: v for k, v in rule.items() if k not in {"Id", "Prefix"}}
                api_rule["ID"] = rule.get("Id", "rule")
                api_rule["Filter"] = {"Prefix": rule.get("Prefix", "")}
                api_rules.append(api_rule)
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": api_rules})
    for logical_id in _of_type(cfn, "AWS::S3::BucketPolicy"):
        props = resolve(cfn["Resources"][logical_id]["Properties"])
        # moto enforces bucket policies, and the local endpoint is plain HTTP: a TLS-only Deny would refuse
        # every local request. Those statements are left out here (and only here).
        statements = [
            st for st in props["PolicyDocument"].get("Statement", []) if "aws:SecureTransport" not in json.dumps(st)
        ]
        if statements:
            policy = {**props["PolicyDocument"], "Statement": statements}
            s3.put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(policy))


def step_table(cfn: dict[str, Any], resolve: Resolver) -> None:
    """TTL and point-in-time recovery."""
    ddb = boto3.client("dynamodb", region_name=resolve.region)
    for logical_id in _of_type(cfn, "AWS::DynamoDB::Table"):
        props = cfn["Resources"][logical_id].get("Properties") or {}
        table = resolve.physical[logical_id]
        ttl = props.get("TimeToLiveSpecification") or {}
        current = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"].get("TimeToLiveStatus")
        if ttl.get("Enabled") and current not in {"ENABLED", "ENABLING"}:
            ddb.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
            )
        pitr = (props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")
        if pitr:
            ddb.update_continuous_backups(
                TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )


def step_functions(cfn: dict[str, Any], resolve: Resolver) -> None:
    """Layers (found by name: moto gives a LayerVersion no physical id). TracingConfig and EphemeralStorage
    are ignored too, but moto's UpdateFunctionConfiguration ignores them as well: nothing to call."""
    lam = boto3.client("lambda", region_name=resolve.region)
    layer_arns: dict[str, str] = {}
    layers = lam.list_layers()["Layers"]
    for logical_id in _of_type(cfn, "AWS::Lambda::LayerVersion"):
        # moto names a stack's layer <stack>-<logical id>-<suffix>, not by its LayerName
        wanted = (
            str(resolve(cfn["Resources"][logical_id]["Properties"].get("LayerName", ""))),
            f"{resolve.stack_name}-{logical_id}-",
        )
        match = [x for x in layers if x["LayerName"] == wanted[0] or x["LayerName"].startswith(wanted[1])]
        if len(match) != 1:
            raise RuntimeError(f"{logical_id}: expected one layer named like {wanted}, found {match}")
        layer_arns[logical_id] = match[0]["LatestMatchingVersion"]["LayerVersionArn"]
    for logical_id in _of_type(cfn, "AWS::Lambda::Function"):
        props = cfn["Resources"][logical_id].get("Properties") or {}
        update: dict[str, Any] = {}
        fn_layers = props.get("Layers") or []
        if fn_layers:
            update["Layers"] = [
                layer_arns[v["Ref"]] if isinstance(v, dict) and "Ref" in v else resolve(v) for v in fn_layers
            ]
        if update:
            lam.update_function_configuration(FunctionName=resolve.physical[logical_id], **update)


def step_event_sources(mappings: dict[str, Any], resolve: Resolver) -> list[QueueSource]:
    """The mappings taken out before create, with the queue's URL and the function's name."""
    sources = []
    for resource in mappings.values():
        props = resource["Properties"]
        target = props["EventSourceArn"]["Fn::GetAtt"]
        queue = target[0] if isinstance(target, list) else str(target).split(".")[0]
        sources.append(
            QueueSource(
                queue_url=resolve.physical[queue],
                function_name=str(resolve(props["FunctionName"])),
                batch_size=int(props.get("BatchSize", 10)),
                window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                report_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            )
        )
    return sources


def step_state_machine(
    cfn: dict[str, Any],
    resolve: Resolver,
    settings: Settings,
    template: Path,
    asl: Path,
    names: dict[str, str],
    overrides: dict[str, str] | None,
) -> str:
    """Each state machine in moto's executing backend, same name, its ASL (the file its DefinitionUri names in
    the SAM template; `asl` for the tune's) with its substitutions resolved. Returns the tune's ARN."""
    from . import sfn

    sources = {
        k: Path(str(v["Properties"]["DefinitionUri"]))
        for k, v in (load_template(template).get("Resources") or {}).items()
        if isinstance(v, dict) and v.get("Type") == sfn.STATE_MACHINE_TYPE
    }
    tune_arn = ""
    for sm_id in _of_type(cfn, "AWS::StepFunctions::StateMachine"):
        sm_name = resolve.physical[sm_id].rsplit(":", 1)[-1]
        source = sources.get(sm_id)
        file = asl if source is None or source.name == asl.name else template.parent / source
        # The stack's schedule rule already targets this ARN (same name in both backends): schedule_rule=False.
        arn = sfn.deploy(settings, template, file, overrides, name=sm_name, function_names=names, schedule_rule=False)
        if file == asl:
            tune_arn = arn
    return tune_arn


# ---------------------------------------------------------------------------------------------- deploy


def deploy_stack(
    settings: Settings,
    template: Path = TEMPLATE,
    asl: Path = ASL,
    *,
    stack_name: str = STACK_NAME,
    parameters: dict[str, str] | None = None,
    overrides: dict[str, str] | None = None,
    state_machine_name: str | None = None,
) -> LocalStack:
    """Package, transform and create template.yaml as a stack in the moto server boto3 points at (which must
    run in this process, for the local Lambda runner), then run the named steps. A second call with the same
    stack name creates nothing new; it re-runs the idempotent steps."""
    template, asl = Path(template).resolve(), Path(asl).resolve()
    region = settings.region
    doc = load_template(template)
    params = parameter_values(doc, parameters)
    packaged, uploads = package(doc, template.parent)
    cfn_template = localize(transform(packaged, params, region), settings, stack_name, state_machine_name)
    for_moto, removed, removed_outputs = split_api_resources(cfn_template)
    for_moto, mappings = split_event_sources(for_moto)

    cfn_client = boto3.client("cloudformation", region_name=region)
    steps: list[str] = []
    fresh = not _stack_exists(cfn_client, stack_name)
    if fresh:
        s3 = boto3.client("s3", region_name=region)
        _ensure_code_bucket(s3, CODE_BUCKET, region)
        for key, data in uploads.items():
            s3.put_object(Bucket=CODE_BUCKET, Key=key, Body=data)
        _create_stack(cfn_client, stack_name, for_moto)
    else:  # the steps below follow the stack as it was created (SAM's hashed logical ids may have moved on)
        body = cfn_client.get_template(StackName=stack_name)["TemplateBody"]
        cfn_template = json.loads(body) if isinstance(body, str) else dict(body)
    resources = cfn_client.describe_stack_resources(StackName=stack_name)["StackResources"]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources if "LogicalResourceId" in r}
    account = str(boto3.client("sts", region_name=region).get_caller_identity()["Account"])
    types = {k: v["Type"] for k, v in cfn_template["Resources"].items()}
    resolve = Resolver(region, account, stack_name, params, physical, types)

    if fresh:
        step_rest_api(cfn_template, removed, resolve)
        steps.append("rest_api")
    step_bucket(cfn_template, resolve)
    step_table(cfn_template, resolve)
    step_functions(cfn_template, resolve)
    steps += ["bucket", "table", "functions"]
    names = function_names(cfn_template, stack_name)
    sm_arn = step_state_machine(cfn_template, resolve, settings, template, asl, names, overrides)
    steps.append("state_machine")
    queue_sources = step_event_sources(mappings, resolve)
    steps.append("event_sources")

    stack = cfn_client.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    for key, output in removed_outputs.items():
        try:
            outputs[key] = str(resolve(output["Value"]))
        except KeyError:  # the API resources of an earlier call: not recorded in the stack
            continue
    arns = {k: resolve.get_att(k, "Arn") for k in names}
    return LocalStack(stack_name, outputs, dict(resolve.physical), sm_arn, arns, steps, queue_sources)
