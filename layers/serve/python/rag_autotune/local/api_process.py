"""The API of `rag-autotune up` in a process of its own (`rag-autotune serve` against the stack's moto).

In one process, the API's requests shared one GIL with moto's server, the local Step Functions and the state
save: whatever those ran (a vote burst's writes, a scan, a full garbage collection) stalled /ask. A child has
its own interpreter, as the API Lambda has its own sandbox on AWS; it reaches moto over HTTP like any client.

The child ends with `up`: `stop` asks it to (SIGTERM, as `serve` expects) and kills it if it does not, and on
Linux the kernel sends it SIGTERM should `up` die without stopping it (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import discovery
from .child import die_with_parent

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # layers/serve/python: where rag_autotune imports from


class ApiProcessError(RuntimeError):
    """The API process exited or never answered."""


def serve_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "rag_autotune.cli", "serve", "--host", host, "--port", str(port)]


class ApiProcess:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        answers: Callable[[str], bool] = discovery.answers,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host, self.port = host, port
        self._command = list(command) if command is not None else serve_command(host, port)
        base = dict(os.environ if env is None else env)
        base["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), base.get("PYTHONPATH")) if p)
        self._env = base
        self._answers, self._clock, self._pause = answers, clock, pause
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 600.0) -> ApiProcess:
        """Start the child and return once it accepts connections (it binds after loading the app)."""
        self.proc = subprocess.Popen(self._command, env=self._env, preexec_fn=die_with_parent)  # noqa: PLW1509
        deadline = self._clock() + timeout_s
        while not self._answers(self.url):
            code = self.proc.poll()
            if code is not None:
                raise ApiProcessError(f"the API process exited ({code}) before serving {self.url}")
            if self._clock() > deadline:
                self.stop()
                raise ApiProcessError(f"the API process did not serve {self.url} within {timeout_s:.0f} s")
            self._pause(0.2)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after timeout_s; the child's exit code (None when it never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
