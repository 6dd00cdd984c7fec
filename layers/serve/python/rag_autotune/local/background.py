"""A loop on a daemon thread, started and stopped by the local stack: what the cron scheduler and the SQS
event source (the stand-ins for EventBridge's schedule and Lambda's event source mapping) have in common."""

from __future__ import annotations

import threading
from typing import Self


class BackgroundLoop:
    THREAD_NAME = "rag-autotune-loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.THREAD_NAME, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        """The loop: runs until `self._stop` is set."""
        raise NotImplementedError
