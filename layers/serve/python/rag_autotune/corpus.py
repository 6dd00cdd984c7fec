"""Read a corpus: a JSONL file of {"id","title","text"} or a folder of .md/.txt files."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .domain import Document
from .errors import IngestError

MAX_ERRORS_SHOWN = 20


def _from_jsonl(path: Path) -> tuple[list[Document], list[str]]:
    with path.open(encoding="utf-8") as fh:
        return documents_from_jsonl(fh)


def documents_from_jsonl(lines: Iterable[str]) -> tuple[list[Document], list[str]]:
    """One document per {"id","title","text"} line, and a message (with its line number) per malformed one."""
    docs: list[Document] = []
    errors: list[str] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {lineno}: invalid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            errors.append(f"line {lineno}: expected an object")
            continue
        missing = [k for k in ("id", "text") if not isinstance(obj.get(k), str) or not obj[k].strip()]
        if missing:
            errors.append(f"line {lineno}: missing or empty string field(s): {', '.join(missing)}")
            continue
        title = obj.get("title", "")
        if not isinstance(title, str):
            errors.append(f"line {lineno}: title must be a string")
            continue
        doc_id = obj["id"].strip()
        if doc_id in seen:
            errors.append(f"line {lineno}: duplicate id {doc_id!r}")
            continue
        seen.add(doc_id)
        docs.append(Document(doc_id, title.strip() or doc_id, obj["text"]))
    return docs, errors


def _title_of(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return fallback


def document_from_text(doc_id: str, text: str) -> Document:
    """A .md/.txt file as a document: its first non-empty line (without a heading's #) is the title."""
    return Document(doc_id, _title_of(text, doc_id), text)


def _from_folder(root: Path) -> tuple[list[Document], list[str]]:
    docs: list[Document] = []
    errors: list[str] = []
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in {".md", ".txt"})
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            errors.append(f"{rel}: not UTF-8 text")
            continue
        if not text.strip():
            errors.append(f"{rel}: empty file")
            continue
        docs.append(document_from_text(rel, text))
    return docs, errors


def load_documents(path: Path) -> tuple[list[Document], list[str]]:
    """All well-formed documents and a message per malformed one (JSONL: with its line number)."""
    path = Path(path)
    if path.is_dir():
        docs, errors = _from_folder(path)
    elif path.is_file():
        docs, errors = _from_jsonl(path)
    else:
        raise IngestError(f"{path}: no such file or folder")
    if not docs:
        raise IngestError(f"{path}: no documents found" + (f" ({len(errors)} malformed)" if errors else ""))
    return docs, errors
