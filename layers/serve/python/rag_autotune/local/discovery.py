"""How CLI commands in another shell find a running `rag-autotune up` without any export.

Once it serves, `up` writes `<state>.running.json` next to its state folder (`.local/state.running.json` by
default): its moto endpoint, API URL and pid. It removes the file when it stops. A file whose process is gone, or
whose endpoint does not answer, is left from a killed run and is ignored, so a command never goes to a stack
that is not there."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SUFFIX = ".running.json"


@dataclass(frozen=True)
class RunningStack:
    endpoint: str
    api: str
    pid: int
    file: Path


def running_file(state: Path) -> Path:
    return state.with_name(state.name + SUFFIX)


def announce(state: Path, endpoint: str, api: str) -> Path:
    """Write this process's stack for `state` (write, then rename: a reader never sees half a file)."""
    path = running_file(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"endpoint": endpoint, "api": api, "pid": os.getpid()}) + "\n")
    tmp.replace(path)
    return path


def withdraw(state: Path) -> None:
    """Remove the file if this process wrote it (another `up` may have taken the state over since)."""
    path = running_file(state)
    entry = _read(path)
    if entry is not None and entry.pid == os.getpid():
        path.unlink(missing_ok=True)


def find(state: Path) -> RunningStack | None:
    """The stack a live `up` announced for `state`, or None when there is none or it is gone."""
    entry = _read(running_file(state))
    if entry is None or not _alive(entry.pid) or not answers(entry.endpoint):
        return None
    return entry


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """Whether something accepts connections at the URL's host and port."""
    parts = urlsplit(url)
    if parts.hostname is None:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _read(path: Path) -> RunningStack | None:
    try:
        body = json.loads(path.read_text())
        return RunningStack(str(body["endpoint"]), str(body.get("api", "")), int(body["pid"]), path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    if pid <= 0:  # 0 and negatives would signal process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
