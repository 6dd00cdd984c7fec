"""Create the bucket and the table that template.yaml declares, in whatever endpoint boto3 points at
(moto's server, LocalStack, a dev account). The table's keys and indexes are read from the template, so
local runs and tests cannot drift from what is deployed. Idempotent."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import yaml
from botocore.exceptions import ClientError

from ..adapters.aws import make_client
from ..settings import Settings

TABLE_RESOURCE = "FeedbackTable"
_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
)


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short tags (!Ref, !Sub, !If, !GetAtt ...) as plain values."""


def _cfn_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        value: Any = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        value = loader.construct_scalar(cast(yaml.ScalarNode, node))
        if tag_suffix == "GetAtt":  # `!GetAtt A.B` is `Fn::GetAtt: [A, B]`: JSON templates allow only the list
            value = str(value).split(".", 1)
    return {f"Fn::{tag_suffix}" if tag_suffix != "Ref" else "Ref": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def find_template(start: Path | None = None) -> Path:
    """template.yaml in the first directory at or above start (default: this file) that has one."""
    here = (start or Path(__file__)).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / "template.yaml"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no template.yaml at or above {here}")


def load_template(path: Path | None = None) -> dict[str, Any]:
    with open(path or find_template(), encoding="utf-8") as fh:
        doc = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a CloudFormation template")
    return doc


def table_spec(template: dict[str, Any]) -> dict[str, Any]:
    """create_table keyword arguments (minus TableName) from the FeedbackTable resource, plus its TTL
    attribute under the key "TtlAttribute" (None when the template enables no TTL)."""
    props = template["Resources"][TABLE_RESOURCE]["Properties"]
    spec = {k: props[k] for k in _TABLE_KEYS if k in props}
    ttl = props.get("TimeToLiveSpecification") or {}
    spec["TtlAttribute"] = ttl.get("AttributeName") if ttl.get("Enabled") else None
    return spec


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
            raise
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            s3.create_bucket(**kwargs)
        except ClientError as exc2:
            if _code(exc2) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def ensure_table(ddb: Any, table: str, spec: dict[str, Any]) -> None:
    create = {k: v for k, v in spec.items() if k != "TtlAttribute"}
    try:
        ddb.create_table(TableName=table, **create)
    except ClientError as exc:
        if _code(exc) != "ResourceInUseException":
            raise
    ddb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ttl_attr = spec.get("TtlAttribute")
    if ttl_attr:
        current = ddb.describe_time_to_live(TableName=table).get("TimeToLiveDescription", {})
        if current.get("TimeToLiveStatus") not in {"ENABLED", "ENABLING"}:
            ddb.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"AttributeName": ttl_attr, "Enabled": True}
            )


def ensure_resources(
    settings: Settings,
    template_path: Path | None = None,
    *,
    s3: Any = None,
    dynamodb: Any = None,
) -> None:
    """Bucket (versioned) and table (keys, GSIs, billing and TTL from template.yaml). Clients default to the
    shared ones from adapters.aws."""
    spec = table_spec(load_template(template_path))
    ensure_bucket(s3 or make_client("s3", settings.region), settings.bucket, settings.region)
    ensure_table(dynamodb or make_client("dynamodb", settings.region), settings.table, spec)
