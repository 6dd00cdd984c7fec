"""ensure_resources against moto's server: the table matches template.yaml's FeedbackTable, and it is
idempotent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from rag_autotune.adapters.aws import CLIENT_CONFIG
from rag_autotune.local.resources import ensure_resources, find_template, load_template, table_spec
from rag_autotune.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clients(moto_url: str) -> tuple[Any, Any]:
    session = boto3.session.Session()
    return (
        session.client("s3", region_name="us-east-1", endpoint_url=moto_url, config=CLIENT_CONFIG),
        session.client("dynamodb", region_name="us-east-1", endpoint_url=moto_url, config=CLIENT_CONFIG),
    )


def test_template_is_found_and_parsed_with_cfn_tags() -> None:
    assert find_template() == REPO / "template.yaml"
    assert find_template(REPO / "layers" / "serve" / "python") == REPO / "template.yaml"
    doc = load_template(REPO / "template.yaml")
    assert doc["Globals"]["Function"]["Environment"]["Variables"]["RAG_TABLE"] == {"Ref": "FeedbackTable"}
    spec = table_spec(doc)
    assert spec["BillingMode"] == "PAY_PER_REQUEST"
    assert spec["TtlAttribute"] == "expires_at"
    assert [g["IndexName"] for g in spec["GlobalSecondaryIndexes"]] == ["gsi1"]


def test_find_template_fails_outside_a_repo(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        find_template(tmp_path)


def test_ensure_resources_builds_table_from_template_and_is_idempotent(clients: tuple[Any, Any], unique: str) -> None:
    s3, ddb = clients
    settings = Settings(bucket=f"rag-res-{unique}", table=f"rag-res-{unique}")
    ensure_resources(settings, s3=s3, dynamodb=ddb)
    ensure_resources(settings, REPO / "template.yaml", s3=s3, dynamodb=ddb)  # second run: no error

    props = load_template()["Resources"]["FeedbackTable"]["Properties"]
    table = ddb.describe_table(TableName=settings.table)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert sorted(table["KeySchema"], key=str) == sorted(props["KeySchema"], key=str)
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str)
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    (gsi,) = table["GlobalSecondaryIndexes"]
    (want,) = props["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == want["IndexName"] == "gsi1"
    assert gsi["KeySchema"] == want["KeySchema"]
    assert gsi["Projection"]["ProjectionType"] == "ALL"

    ttl = ddb.describe_time_to_live(TableName=settings.table)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert ttl["AttributeName"] == "expires_at"

    assert s3.get_bucket_versioning(Bucket=settings.bucket)["Status"] == "Enabled"
    assert [t for t in ddb.list_tables()["TableNames"] if t == settings.table] == [settings.table]


def test_make_client_is_built_once(moto_url: str) -> None:
    from rag_autotune.adapters.aws import clear_clients, make_client

    try:
        client = make_client("s3", "us-east-1")
        assert make_client("s3", "us-east-1") is client
        assert make_client("s3", "eu-west-1") is not client
        assert client.meta.endpoint_url == moto_url  # boto3 read AWS_ENDPOINT_URL itself
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
        assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (2, 10)
    finally:
        clear_clients()
