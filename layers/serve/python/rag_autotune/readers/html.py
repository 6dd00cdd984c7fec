"""HTML: the main text without navigation, headers and footers (trafilatura), the title from <title> (else
the first <h1>), and the canonical URL, when the page names one, as the link its citations carry."""

from __future__ import annotations

from urllib.parse import urljoin

from ..domain import Document
from .limits import ReadLimits, Skipped


def _libs():  # type: ignore[no-untyped-def]
    try:
        import lxml.html
        import trafilatura
    except ImportError as exc:  # pragma: no cover - the ingest extra is missing
        raise ImportError("reading HTML needs the ingest extra: pip install 'rag-autotune[ingest]'") from exc
    return lxml.html, trafilatura


def _first_text(tree, xpath: str) -> str:  # type: ignore[no-untyped-def]
    for el in tree.xpath(xpath):
        text = " ".join(el.text_content().split()) if hasattr(el, "text_content") else " ".join(str(el).split())
        if text:
            return text[:300]
    return ""


def read_html(name: str, data: bytes, limits: ReadLimits, url: str = "") -> Document:
    lxml_html, trafilatura = _libs()
    if not data.strip():
        raise Skipped("empty file")
    try:
        tree = lxml_html.document_fromstring(data)
    except Exception as exc:  # noqa: BLE001 - lxml raises several kinds on junk; all mean "not HTML we can read"
        raise Skipped(f"not readable as HTML ({type(exc).__name__})") from exc
    title = _first_text(tree, "//head/title") or _first_text(tree, "//h1") or name
    canonical = _first_text(tree, "//link[@rel='canonical']/@href")
    link = urljoin(url, canonical) if canonical else url
    text = trafilatura.extract(  # from the bytes: trafilatura prunes the tree it is given, losing text
        data,
        url=link or None,
        include_comments=False,
        include_tables=True,
        include_images=False,
        deduplicate=False,
    )
    if not text or not text.strip():
        raise Skipped("no main text in the page")
    if len(text.encode("utf-8")) > limits.max_text_bytes:
        raise Skipped(f"extracted text over the {limits.max_text_bytes // (1024 * 1024)} MB limit")
    return Document(name, title, text, url=link)
