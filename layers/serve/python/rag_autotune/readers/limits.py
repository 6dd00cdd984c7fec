"""What one file may cost a reader: its size, its pages, the text it expands to, and the time spent on it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..settings import Settings

MB = 1024 * 1024


class Skipped(Exception):  # noqa: N818 - not an error of ours: the input's reason to be left out
    """Raised by a reader: the file is left out of the ingest, with this reason in the report."""


@dataclass(frozen=True)
class ReadLimits:
    max_file_bytes: int = 50 * MB
    max_pdf_pages: int = 2000
    max_text_bytes: int = 20 * MB  # decompressed PDF streams and extracted text, per file
    max_seconds: float = 60.0
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def from_settings(cls, s: Settings) -> ReadLimits:
        return cls(
            max_file_bytes=int(s.ingest_max_file_mb * MB),
            max_pdf_pages=s.ingest_max_pdf_pages,
            max_text_bytes=int(s.ingest_max_text_mb * MB),
            max_seconds=s.ingest_max_seconds,
        )

    def deadline(self) -> Deadline:
        return Deadline(self.clock, self.clock() + self.max_seconds, self.max_seconds)

    def check_size(self, size: int) -> None:
        if size > self.max_file_bytes:
            raise Skipped(
                f"refused: {size / MB:.1f} MB is over the {self.max_file_bytes / MB:g} MB limit "
                "(RAG_INGEST_MAX_FILE_MB)"
            )


@dataclass(frozen=True)
class Deadline:
    clock: Callable[[], float]
    at: float
    seconds: float

    def check(self) -> None:
        """Called between units of work (PDF pages): a file cannot hold the ingest past the time cap."""
        if self.clock() > self.at:
            raise Skipped(f"took longer than {self.seconds:g} s (RAG_INGEST_MAX_SECONDS)")
