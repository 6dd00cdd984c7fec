"""boto3 clients, built once per process and shared (clients are thread-safe; building one is not cheap).

The endpoint is boto3's own business: it reads AWS_ENDPOINT_URL (moto, LocalStack) itself.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3},  # 3 attempts in all (1 try + 2 retries)
    connect_timeout=2,
    read_timeout=10,
    tcp_keepalive=True,
    max_pool_connections=16,
)

_clients: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def make_client(service: str, region: str) -> Any:
    """The shared client for (service, region). Created on first use; later calls return the same object."""
    key = (service, region)
    client = _clients.get(key)
    if client is None:
        with _lock:  # boto3's default session is not thread-safe; build each client exactly once
            client = _clients.get(key)
            if client is None:
                client = boto3.session.Session().client(service, region_name=region, config=CLIENT_CONFIG)
                _clients[key] = client
    return client


def clear_clients() -> None:
    """Forget cached clients (tests that change AWS_ENDPOINT_URL between sessions)."""
    with _lock:
        _clients.clear()
