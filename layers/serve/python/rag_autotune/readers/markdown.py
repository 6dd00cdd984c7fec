"""Markdown: one part per section, named by its heading path ("Install › Docker"). markdown-it-py finds the
headings, so a `#` line inside a code fence or an HTML block is not taken for one."""

from __future__ import annotations

import re

from ..domain import SECTION_SEP, Document, Part
from .limits import Skipped
from .text import decode, title_of

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n(?:---|\.\.\.)\s*(?:\n|\Z)", re.S)
_FRONT_TITLE = re.compile(r"^title:\s*['\"]?(.*?)['\"]?\s*$", re.M)


def _headings(text: str) -> list[tuple[int, int, int, str]]:
    """(level, first line, line after, text) of each heading, ATX and setext alike."""
    try:
        from markdown_it import MarkdownIt
    except ImportError as exc:  # pragma: no cover - the ingest extra is missing
        raise ImportError("reading Markdown needs the ingest extra: pip install 'rag-autotune[ingest]'") from exc
    tokens = MarkdownIt("commonmark").parse(text)
    out = []
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.map and tok.level == 0:
            out.append((int(tok.tag[1]), tok.map[0], tok.map[1], tokens[i + 1].content.strip()))
    return out


def read_markdown(name: str, data: bytes) -> Document:
    text = decode(data)
    title = ""
    front = _FRONT_MATTER.match(text)
    if front:
        found = _FRONT_TITLE.search(front.group(1))
        title = found.group(1).strip() if found else ""
        text = text[front.end() :]
    lines = text.splitlines()
    heads = _headings(text)
    top = [h for h in heads if h[0] == 1]
    if not title and len(top) == 1:
        title = top[0][3]
    title = title or title_of(text, name)

    parts: list[Part] = []
    path: list[tuple[int, str]] = []
    starts = [h[1] for h in heads] + [len(lines)]
    intro = "\n".join(lines[: starts[0]]).strip()
    if intro:
        parts.append(Part(intro))
    for (level, _, body_from, heading), end in zip(heads, starts[1:], strict=True):
        path = [p for p in path if p[0] < level] + [(level, heading)]
        body = "\n".join(lines[body_from:end]).strip()
        if not body:
            continue  # a heading straight above its first subheading: the subsection's path shows it
        shown = [h for lvl, h in path if not (lvl == 1 and h == title)]
        parts.append(Part(body, section=SECTION_SEP.join(shown)))
    if not parts:
        raise Skipped("no text under any heading")
    return Document(name, title, text, parts=tuple(parts))
