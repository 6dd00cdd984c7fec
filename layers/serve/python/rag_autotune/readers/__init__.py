"""Readers: bytes of one file → documents, or the reason it is left out.

`read_file` is the one entry point (a folder, a crawled page or an S3 object all come as name + bytes). Bad
input never raises: it comes back in `ReadResult.skipped` with its reason, and the caller decides whether
that aborts (`ingest --strict`). The parsing libraries are imported only when a file of their type is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..domain import Document
from ..errors import IngestError
from .html import read_html
from .jsonl import read_jsonl
from .limits import ReadLimits, Skipped
from .markdown import read_markdown
from .pdf import read_pdf
from .text import read_text

__all__ = ["KINDS", "ReadLimits", "ReadResult", "Skip", "kind_of", "read_file"]

# File suffix → reader kind. Anything else in a folder is not a document (images, CSS, scripts).
KINDS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
}
_MEDIA = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
}


@dataclass(frozen=True)
class Skip:
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass
class ReadResult:
    documents: list[Document] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    def extend(self, other: ReadResult) -> None:
        self.documents += other.documents
        self.skipped += other.skipped


def kind_of(name: str, content_type: str = "") -> str | None:
    """The reader for a file: by its media type when one is given (a fetched page), else by its suffix."""
    media = content_type.split(";")[0].strip().lower()
    if media in _MEDIA:
        return _MEDIA[media]
    return KINDS.get(PurePosixPath(name).suffix.lower())


def read_file(name: str, data: bytes, limits: ReadLimits, *, kind: str | None = None, url: str = "") -> ReadResult:
    """The documents in one file (one, or one per JSONL line), and a Skip per part left out.
    `name` becomes the doc id (a path relative to the ingested folder, or a page's URL)."""
    kind = kind or kind_of(name)
    try:
        limits.check_size(len(data))
        if kind == "jsonl":
            docs, bad = read_jsonl(name, data)
            return ReadResult(docs, [Skip(where, why) for where, why in bad])
        if kind == "markdown":
            doc = read_markdown(name, data)
        elif kind == "text":
            doc = read_text(name, data)
        elif kind == "html":
            doc = read_html(name, data, limits, url)
        elif kind == "pdf":
            doc = read_pdf(name, data, limits)
        else:
            raise Skipped(f"unsupported file type (readable: {', '.join(sorted(KINDS))})")
    except Skipped as why:
        return ReadResult(skipped=[Skip(name, str(why))])
    except ImportError as exc:  # the ingest extra is missing: every file of the kind would fail, so stop
        raise IngestError(str(exc)) from exc
    if url and not doc.url:
        doc = Document(doc.doc_id, doc.title, doc.text, url=url, parts=doc.parts)
    return ReadResult([doc])
