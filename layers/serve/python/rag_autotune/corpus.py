"""Read a corpus from disk: a JSONL file of {"id","title","text"}, one HTML/PDF/Markdown/text file, or a folder
of them (rag_autotune/readers does the reading). Bad files are skipped with their reason, never fatal here."""

from __future__ import annotations

from pathlib import Path

from .domain import Document
from .errors import IngestError
from .readers import KINDS, ReadLimits, ReadResult, Skip, read_file
from .readers.limits import Skipped

MAX_ERRORS_SHOWN = 20
NOT_DOCUMENTS = {"robots.txt"}  # a built site's crawler rules: never a document


def _read_path(path: Path, name: str, limits: ReadLimits) -> ReadResult:
    try:
        limits.check_size(path.stat().st_size)  # refused before a byte of it is read into memory
    except Skipped as why:
        return ReadResult(skipped=[Skip(name, str(why))])
    return read_file(name, path.read_bytes(), limits)


def _from_folder(root: Path, limits: ReadLimits) -> ReadResult:
    out = ReadResult()
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in KINDS
        and p.name.lower() not in NOT_DOCUMENTS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    for path in files:
        out.extend(_read_path(path, path.relative_to(root).as_posix(), limits))
    return out


def load_documents(path: Path, limits: ReadLimits | None = None) -> tuple[list[Document], list[str]]:
    """All readable documents and, per skipped file or JSONL line, "<name>: <reason>"."""
    path = Path(path)
    limits = limits or ReadLimits()
    if path.is_dir():
        result = _from_folder(path, limits)
    elif path.is_file():
        kind = KINDS.get(path.suffix.lower(), "jsonl")  # a file of another name is read as JSONL, as before
        try:
            limits.check_size(path.stat().st_size)
        except Skipped as why:
            raise IngestError(f"{path}: {why}") from None
        result = read_file(path.name, path.read_bytes(), limits, kind=kind)
    else:
        raise IngestError(f"{path}: no such file or folder")
    docs: list[Document] = []
    errors = [str(s) for s in result.skipped]
    seen: set[str] = set()
    for doc in result.documents:
        if doc.doc_id in seen:
            errors.append(f"{doc.doc_id}: duplicate id")
            continue
        seen.add(doc.doc_id)
        docs.append(doc)
    if not docs:
        first = f": {errors[0]}" if errors else ""
        raise IngestError(f"{path}: no documents found" + (f" ({len(errors)} skipped{first})" if errors else ""))
    return docs, errors
