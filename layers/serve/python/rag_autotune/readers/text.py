"""Plain text: UTF-8 only (a file in another encoding is skipped, not guessed at)."""

from __future__ import annotations

from ..domain import Document
from .limits import Skipped


def decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Skipped(f"not UTF-8 text (byte {exc.start})") from exc
    if not text.strip():
        raise Skipped("empty file")
    return text


def title_of(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return fallback


def read_text(name: str, data: bytes) -> Document:
    text = decode(data)
    return Document(name, title_of(text, name), text)
