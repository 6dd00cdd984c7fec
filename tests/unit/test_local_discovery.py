"""Which endpoints count as local, and how a running `up` is found: a file it writes, trusted only while its
process lives and its endpoint answers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag_autotune.adapters.aws import is_local_endpoint
from rag_autotune.local import discovery


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:5000", True),
        ("http://localhost:4566", True),
        ("https://s3.localhost:4566", True),
        ("http://127.8.9.10", True),
        ("http://[::1]:5000", True),
        ("127.0.0.1:5000", True),
        ("https://s3.eu-west-1.amazonaws.com", False),
        ("http://localstack:4566", False),  # a container's name: another host, whose keys are its own business
        ("http://10.0.0.5:4566", False),
        ("http://localhost.example.com", False),
        ("", False),
        (None, False),
    ],
)
def test_local_endpoints(url: str | None, local: bool) -> None:
    assert is_local_endpoint(url) is local


@pytest.fixture
def listening() -> Iterator[str]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_live_stack_is_found_and_gone_once_withdrawn(tmp_path: Path, listening: str) -> None:
    state = tmp_path / "state"
    path = discovery.announce(state, listening, "http://127.0.0.1:8000")
    assert path == tmp_path / "state.running.json"
    assert discovery.find(state) == discovery.RunningStack(listening, "http://127.0.0.1:8000", os.getpid(), path)
    discovery.withdraw(state)
    assert not path.exists()
    assert discovery.find(state) is None


def test_a_dead_process_is_not_trusted_even_if_the_port_answers(tmp_path: Path, listening: str) -> None:
    """A killed `up` leaves its file; another server may listen on its port by now."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "state.running.json").write_text(
        json.dumps({"endpoint": listening, "api": "", "pid": int(gone.stdout)})
    )
    assert discovery.find(tmp_path / "state") is None


def test_an_endpoint_that_does_not_answer_is_not_trusted(tmp_path: Path) -> None:
    discovery.announce(tmp_path / "state", _closed_port(), "http://127.0.0.1:8000")
    assert discovery.find(tmp_path / "state") is None


@pytest.mark.parametrize("body", ["", "{", '{"endpoint": "http://127.0.0.1:1"}', '{"endpoint": 1, "pid": 0}', "[]"])
def test_a_damaged_file_is_ignored(tmp_path: Path, body: str) -> None:
    (tmp_path / "state.running.json").write_text(body)
    assert discovery.find(tmp_path / "state") is None


def test_withdraw_leaves_another_processs_file(tmp_path: Path, listening: str) -> None:
    """A second `up` took the state over: the first one's stop must not hide it."""
    path = tmp_path / "state.running.json"
    path.write_text(json.dumps({"endpoint": listening, "api": "", "pid": os.getppid()}))
    discovery.withdraw(tmp_path / "state")
    assert path.exists()
