"""JSONL: one {"id", "title"?, "text"} object a line. A bad line is skipped with its line number."""

from __future__ import annotations

import json

from ..domain import Document
from .text import decode


def read_jsonl(name: str, data: bytes) -> tuple[list[Document], list[tuple[str, str]]]:
    """The documents, and (where, why) per skipped line."""
    docs: list[Document] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(decode(data).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            skipped.append((where, f"invalid JSON ({exc.msg})"))
            continue
        if not isinstance(obj, dict):
            skipped.append((where, "expected an object"))
            continue
        missing = [k for k in ("id", "text") if not isinstance(obj.get(k), str) or not obj[k].strip()]
        if missing:
            skipped.append((where, f"missing or empty string field(s): {', '.join(missing)}"))
            continue
        title = obj.get("title", "")
        url = obj.get("url", "")
        if not isinstance(title, str) or not isinstance(url, str):
            skipped.append((where, "title and url must be strings"))
            continue
        doc_id = obj["id"].strip()
        if doc_id in seen:
            skipped.append((where, f"duplicate id {doc_id!r}"))
            continue
        seen.add(doc_id)
        docs.append(Document(doc_id, title.strip() or doc_id, obj["text"], url=url.strip()))
    return docs, skipped
