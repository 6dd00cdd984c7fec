"""`rag-autotune up` runs the API in a child process (local/api_process.py): it starts it, waits until it
serves, and ends it when `up` stops (SIGTERM, then SIGKILL), or the kernel ends it when `up` dies. Real child
processes (a few lines of Python), a fake "answers" probe and a fake clock; no timing is asserted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rag_autotune.local.api_process import ApiProcess, ApiProcessError, serve_command

# A stand-in for `rag-autotune serve`: writes a file once its SIGTERM handler is set, exits 3 on SIGTERM.
SERVES = """
import pathlib, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
pathlib.Path(sys.argv[1]).write_text("ready")
while True:
    time.sleep(1)
"""
# One that ignores SIGTERM: only SIGKILL ends it.
STUBBORN = """
import pathlib, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path(sys.argv[1]).write_text("ready")
while True:
    time.sleep(1)
"""


def ready_when(path: Path):  # type: ignore[no-untyped-def]
    return lambda _url: path.exists()


def test_the_serve_command_is_this_cli_on_the_given_port() -> None:
    assert serve_command("127.0.0.1", 8123)[1:] == [
        "-m",
        "rag_autotune.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
    ]


def test_start_waits_until_it_serves_and_stop_ends_it_with_sigterm(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    api = ApiProcess("127.0.0.1", 1, command=[sys.executable, "-c", SERVES, str(flag)], answers=ready_when(flag))
    api.start(timeout_s=120)
    assert flag.exists() and api.alive() and api.url == "http://127.0.0.1:1"
    assert api.stop() == 3  # its SIGTERM handler ran: asked to stop, not killed
    assert not api.alive() and api.stop() == 3  # stopping twice is harmless


def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    api = ApiProcess("127.0.0.1", 1, command=[sys.executable, "-c", STUBBORN, str(flag)], answers=ready_when(flag))
    api.start(timeout_s=120)
    assert api.stop(timeout_s=0.5) == -signal.SIGKILL


def test_a_child_that_exits_before_serving_fails_start() -> None:
    api = ApiProcess("127.0.0.1", 1, command=[sys.executable, "-c", "raise SystemExit(4)"], answers=lambda _: False)
    with pytest.raises(ApiProcessError, match=r"exited \(4\)"):
        api.start(timeout_s=600)


def test_a_child_that_never_serves_is_stopped_at_the_deadline(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    ticks = iter(range(0, 10_000, 100))  # each look at the clock is 100 s later
    api = ApiProcess(
        "127.0.0.1",
        1,
        command=[sys.executable, "-c", SERVES, str(flag)],
        answers=lambda _: False,
        clock=lambda: float(next(ticks)),
        pause=lambda _s: None,
    )
    with pytest.raises(ApiProcessError, match="did not serve"):
        api.start(timeout_s=250)
    assert api.proc is not None and api.proc.poll() is not None  # not left running


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_child_ends_when_its_parent_dies_without_stopping_it(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    parent = f"""
import sys
from rag_autotune.local.api_process import ApiProcess
api = ApiProcess("127.0.0.1", 1, command=[sys.executable, "-c", {SERVES!r}, {str(flag)!r}],
                 answers=lambda _: __import__("pathlib").Path({str(flag)!r}).exists()).start(timeout_s=120)
print(api.proc.pid, flush=True)
sys.stdin.read()  # until the test kills this process
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    proc.kill()  # as kill -9 on `up`: no chance to stop the child
    proc.wait(30)
    assert _ends(child, within_s=120)  # the kernel sent it SIGTERM


def _ends(pid: int, within_s: float) -> bool:
    """Whether pid is gone (or a zombie: orphans are reaped by whatever init this machine has) within the time."""
    import time

    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_local_lambda_ends_when_up_dies_without_stopping_it(tmp_path: Path) -> None:
    """A local invocation (a train step, say) started from a thread of `up`, as the Step Functions runner starts
    it: killing `up` ends it too, instead of leaving it running for the rest of its timeout."""
    handler = tmp_path / "handler.py"
    handler.write_text(
        "import os, time\ndef main(event, context):\n    print(os.getpid(), flush=True)\n"
        "    while True:\n        time.sleep(1)\n"
    )
    parent = f"""
import sys, threading
from pathlib import Path
from rag_autotune.local.lambdas import LocalFunction, run_local
fn = LocalFunction(logical_id="Step", path=Path({str(handler)!r}), func="main", env={{}}, timeout_s=600)
threading.Thread(target=run_local, args=(fn, "{{}}"), daemon=True).start()
sys.stdin.read()  # until the test kills this process
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
    )
    assert proc.stderr is not None
    child = int(proc.stderr.readline())  # the handler's print goes to stderr (stdout is the result channel)
    proc.kill()  # as kill -9 on `up`
    proc.wait(30)
    assert _ends(child, within_s=120)
