"""Each reader on a small file, and bad input: skipped with its reason, never raised; limits hold."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from rag_autotune.chunking import chunk_document
from rag_autotune.corpus import load_documents
from rag_autotune.domain import Document
from rag_autotune.errors import IngestError
from rag_autotune.readers import ReadLimits, kind_of, read_file
from tests.pdf_files import bomb_pdf, encrypted_pdf, make_pdf

LIMITS = ReadLimits()
MAIN = "Rotate the signing keys every ninety days with the keyring command, then restart the workers. " * 3
PAGE = f"""<!doctype html><html><head><title>Keys - Acme Docs</title>
<link rel="canonical" href="https://docs.acme.test/ops/keys.html"></head><body>
<header><a href="/">Acme Docs</a> <a href="/blog">Blog</a></header>
<nav><ul><li><a href="/a">Getting started</a></li><li><a href="/b">Reference of every option</a></li></ul></nav>
<main><h1>Keys</h1><p>{MAIN}</p><p>Old keys stay valid for one day so that no request fails.</p></main>
<footer>Copyright 2026 Acme Corporation. All rights reserved. Privacy policy.</footer></body></html>"""


def _one(name: str, data: bytes, limits: ReadLimits = LIMITS, **kw) -> Document:  # type: ignore[no-untyped-def]
    result = read_file(name, data, limits, **kw)
    assert result.skipped == [], result.skipped
    assert len(result.documents) == 1
    return result.documents[0]


def _reason(name: str, data: bytes, limits: ReadLimits = LIMITS) -> str:
    result = read_file(name, data, limits)
    assert result.documents == []
    assert [s.name for s in result.skipped] == [name]
    return result.skipped[0].reason


def test_html_keeps_the_main_text_drops_navigation_and_links_the_canonical_url() -> None:
    doc = _one("ops/keys.html", PAGE.encode())
    assert doc.title == "Keys - Acme Docs"
    assert doc.url == "https://docs.acme.test/ops/keys.html"
    assert "Rotate the signing keys" in doc.text and "Old keys stay valid" in doc.text
    for boilerplate in ("Getting started", "Reference of every option", "Copyright 2026", "Blog"):
        assert boilerplate not in doc.text
    chunk = chunk_document(doc)[0]
    assert chunk.url == "https://docs.acme.test/ops/keys.html"


def test_html_without_title_takes_the_h1_and_the_page_url_without_canonical() -> None:
    page = f"<html><body><h1>Keys</h1><p>{MAIN}</p></body></html>".encode()
    doc = _one("https://x.test/keys", page, kind="html", url="https://x.test/keys")
    assert (doc.title, doc.url) == ("Keys", "https://x.test/keys")


def test_pdf_text_per_page_and_chunks_carry_the_page() -> None:
    doc = _one("guide.pdf", make_pdf(["Install the agent on every host.", "Configure the agent with a token."]))
    assert [(p.page, p.text) for p in doc.parts] == [
        (1, "Install the agent on every host."),
        (2, "Configure the agent with a token."),
    ]
    chunks = chunk_document(doc)
    assert [(c.page, c.chunk_id) for c in chunks] == [(1, "guide.pdf#0"), (2, "guide.pdf#1")]  # no chunk crosses


MARKDOWN = """---
title: Acme agent
---
Intro paragraph.

# Acme agent

## Install

Pick a method.

### Docker

Run `docker run acme/agent`.

```sh
# not a heading: inside a fence
docker ps
```

## Configure

Set ACME_TOKEN.
"""


def test_markdown_sections_keep_their_heading_path_in_chunk_title_and_text() -> None:
    doc = _one("agent.md", MARKDOWN.encode())
    assert doc.title == "Acme agent"
    assert [p.section for p in doc.parts] == ["", "Install", "Install › Docker", "Configure"]
    assert "# not a heading" in doc.parts[2].text
    chunks = chunk_document(doc)
    docker = next(c for c in chunks if c.section == "Install › Docker")
    assert docker.title == "Acme agent › Install › Docker"
    assert docker.text.startswith("Install › Docker: Run")
    assert "Set ACME_TOKEN" not in docker.text  # the chunker does not cross a heading


def test_text_and_jsonl() -> None:
    assert _one("notes.txt", b"Release notes\nmore").title == "Release notes"
    result = read_file("c.jsonl", b'{"id": "a", "text": "alpha", "url": "https://x.test/a"}\n{bad\n', LIMITS)
    assert [(d.doc_id, d.url) for d in result.documents] == [("a", "https://x.test/a")]
    assert [str(s) for s in result.skipped] == [
        "c.jsonl line 2: invalid JSON (Expecting property name enclosed in double quotes)"
    ]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", "malformed PDF"),
        ("locked.pdf", encrypted_pdf("secret plans"), "encrypted PDF"),
        ("scan.pdf", make_pdf([], contents=[b"q 100 0 0 100 0 0 cm Q"]), "image-only"),
        ("empty.html", b"<html><head><title>x</title></head><body><img src=a.png><script>f()</script>", "no main text"),
        ("latin1.md", "Caf\xe9 cr\xe8me".encode("latin-1"), "not UTF-8"),
        ("latin1.txt", "na\xefve".encode("latin-1"), "not UTF-8"),
        ("blank.txt", b"  \n", "empty file"),
        ("image.png", b"\x89PNG", "unsupported file type"),
    ],
)
def test_bad_input_is_skipped_with_its_reason(name: str, data: bytes, reason: str) -> None:
    assert reason in _reason(name, data)


def test_a_file_over_the_size_limit_is_refused_with_the_setting_named() -> None:
    reason = _reason("big.md", b"x" * 2048, ReadLimits(max_file_bytes=1024))
    assert reason.startswith("refused:") and "RAG_INGEST_MAX_FILE_MB" in reason


def test_a_pdf_stream_inflating_to_200_mb_stops_at_the_cap_without_the_memory() -> None:
    bomb = bomb_pdf(inflated_mb=200)
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    try:
        reason = _reason("bomb.pdf", bomb, ReadLimits(max_text_bytes=4 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "inflates past the 4 MB limit" in reason
    assert peak < 64 << 20  # far below the 200 MB the stream would inflate to


def test_a_pdf_over_the_page_cap_is_skipped_before_any_page_is_read() -> None:
    assert "over the 10-page limit" in _reason("huge.pdf", make_pdf(["p"] * 30), ReadLimits(max_pdf_pages=10))


def test_a_reader_past_its_time_cap_skips_the_file() -> None:
    ticks = iter(range(0, 1000, 10))  # each clock read is 10 s later: the second page is past a 15 s cap
    limits = ReadLimits(max_seconds=15, clock=lambda: float(next(ticks)))
    assert "longer than 15 s" in _reason("slow.pdf", make_pdf(["one", "two", "three"]), limits)


def test_kind_by_media_type_first_then_suffix() -> None:
    assert kind_of("https://x.test/docs/", "text/html; charset=utf-8") == "html"
    assert kind_of("a/b.PDF") == "pdf"
    assert kind_of("a/b.css") is None


def test_a_folder_mixes_types_and_reports_each_bad_file(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "keys.html").write_text(PAGE)
    (tmp_path / "agent.md").write_text(MARKDOWN)
    (tmp_path / "guide.pdf").write_bytes(make_pdf(["Install the agent."]))
    (tmp_path / "locked.pdf").write_bytes(encrypted_pdf("x"))
    (tmp_path / "old.txt").write_bytes("na\xefve".encode("latin-1"))
    (tmp_path / "style.css").write_text("body {}")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD.txt").write_text("ref")
    docs, errors = load_documents(tmp_path)
    assert [d.doc_id for d in docs] == ["agent.md", "guide.pdf", "site/keys.html"]
    assert [e.split(":")[0] for e in errors] == ["locked.pdf", "old.txt"]


def test_one_file_over_the_limit_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    big = tmp_path / "big.pdf"
    big.write_bytes(b"x" * 4096)
    with pytest.raises(IngestError, match="RAG_INGEST_MAX_FILE_MB"):
        load_documents(big, ReadLimits(max_file_bytes=1024))


def test_a_sitemap_with_an_entity_bomb_is_refused_not_expanded() -> None:
    from rag_autotune.readers.crawl import _xml_locs

    lols = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = f'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY l0 "lol">{lols}]>'
    bomb += '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://h/a&l9;</loc></url></urlset>'
    with pytest.raises(IngestError, match="not a sitemap"):  # 10^9 "lol"s had the entity been expanded
        _xml_locs(bomb.encode())


def test_the_ingest_function_installs_exactly_the_ingest_extra() -> None:
    import tomllib
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    extra = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ingest"]
    lines = (repo / "functions/ingest/requirements.txt").read_text().splitlines()
    assert sorted(extra) == sorted(line for line in lines if line and not line.startswith("#"))
