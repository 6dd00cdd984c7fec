"""boto3 clients, built once per process and shared (clients are thread-safe; building one is not cheap).

The endpoint is boto3's own AWS_ENDPOINT_URL (unset: AWS itself; set: moto, LocalStack). The credentials follow
from it, here and nowhere else: an endpoint on this machine (the embedded moto server, a local LocalStack) gets
fixed local credentials, whatever the user's profile or AWS_* keys hold, so real keys are never sent to it and
a fresh machine with no ~/.aws needs none. Any other endpoint gets boto3's own credential chain, never these.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError

CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3},  # 3 attempts in all (1 try + 2 retries)
    connect_timeout=2,
    read_timeout=10,
    tcp_keepalive=True,
    max_pool_connections=16,
)

# moto and LocalStack accept any key pair; these say in every request log where they came from.
LOCAL_ACCESS_KEY_ID = "local"
LOCAL_SECRET_ACCESS_KEY = "local"
# What else in the environment would choose or carry credentials (a profile that may not exist here, a session
# token that would ride along with the local keys).
_CREDENTIAL_VARS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
)

_clients: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def is_local_endpoint(url: str | None) -> bool:
    """True for an endpoint on this machine (localhost or a loopback address)."""
    if not url:
        return False
    host = urlsplit(url if "//" in url else f"//{url}").hostname
    if host is None:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def configured_endpoint() -> str | None:
    """The endpoint boto3 will call: AWS_ENDPOINT_URL, or None for AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL") or None


def session(region: str) -> boto3.session.Session:
    """A boto3 session for the configured endpoint, with the credentials that endpoint gets (module docstring)."""
    if is_local_endpoint(configured_endpoint()):
        return boto3.session.Session(
            aws_access_key_id=LOCAL_ACCESS_KEY_ID,
            aws_secret_access_key=LOCAL_SECRET_ACCESS_KEY,
            region_name=region,
        )
    return boto3.session.Session(region_name=region)


def has_credentials(region: str) -> bool:
    """Whether boto3 finds usable credentials for the configured endpoint (a local one always has them)."""
    try:
        return session(region).get_credentials() is not None
    except BotoCoreError:  # a profile that does not exist, an expired SSO login…
        return False


def make_client(service: str, region: str) -> Any:
    """The shared client for (service, region). Created on first use; later calls return the same object."""
    key = (service, region)
    client = _clients.get(key)
    if client is None:
        with _lock:  # boto3's default session is not thread-safe; build each client exactly once
            client = _clients.get(key)
            if client is None:
                client = session(region).client(service, config=CLIENT_CONFIG)
                _clients[key] = client
    return client


def new_client(service: str, region: str, config: Config) -> Any:
    """A client of its own, for a caller whose timeouts and retries differ from CLIENT_CONFIG's (built once
    per process by its owner, like make_client's)."""
    with _lock:
        return session(region).client(service, config=CLIENT_CONFIG.merge(config))


def use_endpoint(url: str, region: str | None = None) -> None:
    """Point this process, and the processes it starts, at `url`: for boto3 clients made anywhere (moto's own,
    the local Step Functions and CloudFormation steps, each local Lambda's process), not only by make_client.
    A local endpoint also gets the local credentials in the environment, in place of the user's, and a region
    (`region`, else the one set, else us-east-1)."""
    os.environ["AWS_ENDPOINT_URL"] = url
    if is_local_endpoint(url):
        for var in _CREDENTIAL_VARS:
            os.environ.pop(var, None)
        os.environ["AWS_ACCESS_KEY_ID"] = LOCAL_ACCESS_KEY_ID
        os.environ["AWS_SECRET_ACCESS_KEY"] = LOCAL_SECRET_ACCESS_KEY
        os.environ["AWS_DEFAULT_REGION"] = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    boto3.DEFAULT_SESSION = None  # it would keep the credentials it resolved before
    clear_clients()


def clear_clients() -> None:
    """Forget cached clients (tests that change AWS_ENDPOINT_URL between sessions)."""
    with _lock:
        _clients.clear()
