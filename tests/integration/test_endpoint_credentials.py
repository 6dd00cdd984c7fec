"""Credentials follow the endpoint (adapters/aws.py): a user's real keys never reach the local moto server, and
the local keys never go anywhere but an endpoint on this machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from rag_autotune.adapters import aws

USER_KEY = "AKIAUSERSREALKEY0000"
USER_ENV = {"AWS_ACCESS_KEY_ID": USER_KEY, "AWS_SECRET_ACCESS_KEY": "users-secret", "AWS_SESSION_TOKEN": "users-token"}
TOUCHED = (*USER_ENV, "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_PROFILE")


@pytest.fixture
def user_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A user whose shell holds real AWS keys; every variable the code may change is restored afterwards."""
    for var in TOUCHED:
        monkeypatch.setenv(var, os.environ.get(var, ""))  # recorded, so restored (or removed) afterwards
        if not os.environ[var]:
            monkeypatch.delenv(var)
    for var, value in USER_ENV.items():
        monkeypatch.setenv(var, value)
    aws.clear_clients()
    yield
    aws.clear_clients()
    boto3.DEFAULT_SESSION = None


def _signed_headers(client: Any) -> dict[str, str]:
    """The headers of one real request, as moto received them signed."""
    seen: list[dict[str, str]] = []

    def keep(request: Any, **_: Any) -> None:
        seen.append({k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    client.meta.events.register("before-send.s3.ListBuckets", keep)
    client.list_buckets()
    return seen[0]


def test_the_local_endpoint_gets_local_keys_not_the_users(moto_url: str, user_env: None) -> None:
    os.environ["AWS_ENDPOINT_URL"] = moto_url
    headers = _signed_headers(aws.make_client("s3", "eu-west-1"))
    assert f"Credential={aws.LOCAL_ACCESS_KEY_ID}/" in headers["Authorization"]
    assert "/eu-west-1/s3/" in headers["Authorization"]  # the region is the caller's, explicitly
    assert "X-Amz-Security-Token" not in headers  # the user's session token does not ride along
    assert USER_KEY not in str(headers)


def test_aws_gets_the_users_chain_never_the_local_keys(user_env: None) -> None:
    del os.environ["AWS_ENDPOINT_URL"]
    credentials = aws.session("us-east-1").get_credentials()
    assert credentials is not None
    assert (credentials.access_key, credentials.token) == (USER_KEY, "users-token")


def test_with_no_credentials_aws_gets_none(user_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh machine and no local stack: nothing, rather than the local keys."""
    del os.environ["AWS_ENDPOINT_URL"]
    for var in USER_ENV:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # this machine is no EC2 instance
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    assert aws.has_credentials("us-east-1") is False
    os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
    assert aws.has_credentials("us-east-1") is True


def test_use_endpoint_swaps_the_process_keys_only_for_a_local_endpoint(moto_url: str, user_env: None) -> None:
    """What `up` does to its own process, so clients made with plain boto3 (moto's, the local steps') and the
    Lambda processes it starts carry the local keys too."""
    aws.use_endpoint("https://localstack.example:4566", "us-east-1")
    assert os.environ["AWS_ACCESS_KEY_ID"] == USER_KEY
    assert os.environ["AWS_SESSION_TOKEN"] == "users-token"

    aws.use_endpoint(moto_url, "eu-west-1")
    assert (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_DEFAULT_REGION"]) == (aws.LOCAL_ACCESS_KEY_ID, "eu-west-1")
    assert "AWS_SESSION_TOKEN" not in os.environ
    headers = _signed_headers(boto3.client("s3"))
    assert f"Credential={aws.LOCAL_ACCESS_KEY_ID}/" in headers["Authorization"]
