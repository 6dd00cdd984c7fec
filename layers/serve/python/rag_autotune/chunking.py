"""Split documents into overlapping chunks on paragraph/sentence boundaries, with stable ids."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from .domain import SECTION_SEP, Chunk, Document, Part

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _pieces(text: str, size: int) -> Iterator[str]:
    """Paragraphs, and sentences of paragraphs longer than size, and hard cuts of sentences longer still."""
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if not para:
            continue
        if len(para) <= size:
            yield para
            continue
        for sentence in _SENTENCE_END.split(para):
            for start in range(0, len(sentence), size):
                yield sentence[start : start + size]


def _pack(text: str, size: int, overlap: int) -> list[str]:
    """Greedy packing of pieces up to `size` chars; each chunk after the first starts with the tail
    (≤ overlap chars) of the previous one, so a sentence split across chunks is still found."""
    chunks: list[str] = []
    current = ""
    for piece in _pieces(text, size):
        if current and len(current) + 1 + len(piece) > size:
            chunks.append(current)
            tail = current[-overlap:] if overlap else ""
            tail = tail[tail.find(" ") + 1 :] if " " in tail else tail
            current = f"{tail} {piece}".strip() if tail and len(tail) + 1 + len(piece) <= size else piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def chunk_document(doc: Document, size: int = 1200, overlap: int = 150) -> list[Chunk]:
    """Chunks of `size` chars at most (see _pack). A document with parts (PDF pages, Markdown sections) is
    chunked part by part: no chunk crosses a page or a heading, each carries its page, and a section's
    chunks show its heading path in their title ("Guide › Install › Docker") and at the start of their text.
    Chunk ids are "<doc_id>#<n>": the same text always gives the same ids."""
    out: list[Chunk] = []
    for part in doc.parts or (Part(doc.text),):
        prefix = f"{part.section}: "[: size // 3] if part.section else ""  # a deep path still leaves room
        title = f"{doc.title}{SECTION_SEP}{part.section}" if part.section else doc.title
        for text in _pack(part.text, size - len(prefix), overlap):
            n = len(out)
            out.append(Chunk(f"{doc.doc_id}#{n}", doc.doc_id, title, prefix + text, doc.url, part.page, part.section))
    if not out:  # an empty body is still findable by its title
        out = [Chunk(f"{doc.doc_id}#0", doc.doc_id, doc.title, doc.title, doc.url)]
    return out


def embed_text(chunk: Chunk) -> str:
    """What the encoder sees for a chunk: title then text, so short chunks keep their subject."""
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text


def embed_hash(chunk: Chunk) -> str:
    """The identity of a chunk's vector for one model: the hash of exactly what the encoder sees."""
    return hashlib.sha256(embed_text(chunk).encode()).hexdigest()
