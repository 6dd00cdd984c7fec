"""`make bench-ingest`: speed and text quality of each reader (the one ingest uses, and the alternatives it
was chosen over) on tests/data/ingest_bench.

- HTML: 7 real pages of built docs sites found on a Debian dev machine (mdBook: the Rust book and the Cargo
  guide; Node's API docs; Valgrind's and libxslt's DocBook/gtk-doc manuals), labelled by
  tests/data/ingest_bench/html/labels.json: per page the text lines (≥ 3 words) inside its main-content
  element ("main") and outside it ("boilerplate": navigation, headers, footers). Figures: main-text recall
  (labelled main lines found in the output), boilerplate kept (labelled boilerplate lines found), pages/s.
- PDF: 12 pages built from the demo corpus (tests/pdf_files.py, so the text is known: recall of its lines)
  and, where the machine has them, two real manuals from /usr/share/doc (speed only).
- Markdown: two labelled files (heading paths; a `#` line in a fence, an HTML block and indented code
  must not become headings): section paths right, and false headings.

    python scripts/bench_ingest.py [--rounds 3]
    python scripts/bench_ingest.py --requirements   # the ingest-bench extra's pins, for pip
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "layers" / "serve" / "python"), str(REPO)]

from rag_autotune.readers import ReadLimits, read_file  # noqa: E402
from rag_autotune.readers.markdown import _FRONT_MATTER  # noqa: E402
from tests.pdf_files import make_pdf  # noqa: E402

DATA = REPO / "tests" / "data" / "ingest_bench"
REAL_PDFS = [
    Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf"),
    Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf"),
]
LIMITS = ReadLimits()


def _norm(text: str) -> str:
    # PDF StandardEncoding draws the ASCII apostrophe as a right quote: the extractors are right to say ’
    return " ".join(text.replace("’", "'").split())


# ---- HTML ---------------------------------------------------------------------------------------------------


def html_chosen(data: bytes) -> str:
    r = read_file("page.html", data, LIMITS)
    return r.documents[0].text if r.documents else ""


def html_readability(data: bytes) -> str:
    import lxml.html
    from readability import Document as Readable

    summary = Readable(data.decode("utf-8", "replace")).summary(html_partial=True)
    return "\n".join(lxml.html.fromstring(summary).itertext())


def html_selectolax(data: bytes) -> str:
    """The hand-rolled baseline: drop the usual boilerplate tags, keep the rest of the body."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(data)
    for node in tree.css("script, style, nav, header, footer, aside, noscript"):
        node.decompose()
    body = tree.body
    return body.text(separator="\n") if body is not None else ""


HTML_READERS: dict[str, Callable[[bytes], str]] = {
    "trafilatura 2.3.1 (chosen)": html_chosen,
    "readability-lxml 0.9": html_readability,
    "selectolax 1.0.2, tags dropped": html_selectolax,
}


def bench_html(rounds: int) -> list[tuple[str, ...]]:
    labels = json.loads((DATA / "html" / "labels.json").read_text())
    pages = {name: (DATA / "html" / name).read_bytes() for name in labels}
    rows = []
    for label, reader in HTML_READERS.items():
        found = kept = main_n = boiler_n = 0
        started = time.perf_counter()
        for _ in range(rounds):
            outs = {name: _norm(reader(data)) for name, data in pages.items()}
        seconds = time.perf_counter() - started
        for name, out in outs.items():
            main, boiler = labels[name]["main"], labels[name]["boilerplate"]
            found += sum(_norm(line) in out for line in main)
            kept += sum(_norm(line) in out for line in boiler)
            main_n, boiler_n = main_n + len(main), boiler_n + len(boiler)
        rows.append((label, f"{found / main_n:.1%}", f"{kept / boiler_n:.1%}", f"{rounds * len(pages) / seconds:.0f}"))
    return rows


# ---- PDF ----------------------------------------------------------------------------------------------------


def pdf_chosen(data: bytes) -> list[str]:
    r = read_file("doc.pdf", data, LIMITS)
    return [p.text for p in r.documents[0].parts] if r.documents else []


def pdf_pdfminer(data: bytes) -> list[str]:
    from pdfminer.high_level import extract_text

    text = extract_text(io.BytesIO(data))
    return [t for t in text.split("\f") if t.strip()]


def pdf_pdfium(data: bytes) -> list[str]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(data)
    try:
        return [doc[i].get_textpage().get_text_range() for i in range(len(doc))]
    finally:
        doc.close()


PDF_READERS: dict[str, Callable[[bytes], list[str]]] = {
    "pypdf 7.1.0 (chosen)": pdf_chosen,
    "pdfminer.six 20260107": pdf_pdfminer,
    "pypdfium2 5.15.2": pdf_pdfium,
}


def _labelled_pdf() -> tuple[bytes, list[str]]:
    """12 pages of demo-corpus prose, 40 lines of ≤ 90 chars each; the lines are the labels."""
    words: list[str] = []
    for line in (REPO / "demo" / "corpus.jsonl").read_text().splitlines()[:60]:
        words += re.sub(r"[^\x20-\x7e]", " ", json.loads(line)["text"]).split()
    lines, current = [], ""
    for w in words:
        if len(current) + len(w) + 1 > 90:
            lines.append(current)
            current = w
        else:
            current = f"{current} {w}".strip()
    lines = lines[: 12 * 40]
    pages = ["\n".join(lines[i : i + 40]) for i in range(0, len(lines), 40)]
    return make_pdf(pages), lines


def bench_pdf(rounds: int) -> list[tuple[str, ...]]:
    labelled, lines = _labelled_pdf()
    real = [p.read_bytes() for p in REAL_PDFS if p.exists()]
    rows = []
    for label, reader in PDF_READERS.items():
        started = time.perf_counter()
        for _ in range(rounds):
            pages = reader(labelled)
        seconds = time.perf_counter() - started
        out = _norm(" ".join(pages))
        recall = sum(_norm(line) in out for line in lines) / len(lines)
        real_pages, started = 0, time.perf_counter()
        for data in real:
            real_pages += len(reader(data))
        real_s = time.perf_counter() - started
        rows.append(
            (
                label,
                f"{recall:.1%}",
                f"{len(pages)}/12",
                f"{rounds * 12 / seconds:.0f}",
                f"{real_pages / real_s:.0f} ({real_pages} pages)" if real else "not on this machine",
            )
        )
    return rows


# ---- Markdown -----------------------------------------------------------------------------------------------


def md_chosen(data: bytes) -> list[str]:
    r = read_file("doc.md", data, LIMITS)
    return [p.section for p in r.documents[0].parts] if r.documents else []


def _sections(blocks: list[tuple[int, str]]) -> list[str]:
    """Heading paths of the sections that have text, by the chosen reader's rule (a lone h1 is the title and
    not shown). blocks: (heading level, heading text), or (0, "") for a block of text."""
    tops = [h for lvl, h in blocks if lvl == 1]
    title = tops[0] if len(tops) == 1 else ""
    path: list[tuple[int, str]] = []
    out: list[str] = []
    for level, text in blocks:
        if level:
            path = [p for p in path if p[0] < level] + [(level, text)]
            continue
        shown = " › ".join(h for lvl, h in path if not (lvl == 1 and h == title))
        if not out or out[-1] != shown:
            out.append(shown)
    return out


def md_mistune(data: bytes) -> list[str]:
    import mistune

    text = data.decode("utf-8")
    front = _FRONT_MATTER.match(text)  # stripped as the chosen reader strips it
    tokens = mistune.create_markdown(renderer=None)(text[front.end() :] if front else text)
    blocks = [
        (t["attrs"]["level"], "".join(c.get("raw", "") for c in t.get("children", [])).strip())
        if t.get("type") == "heading"
        else (0, "")
        for t in tokens
        if isinstance(t, dict) and t.get("type") != "blank_line"
    ]
    return _sections(blocks)


def md_regex(data: bytes) -> list[str]:
    """What hand-written parsing gives: every line starting with # is a heading."""
    text = data.decode("utf-8")
    front = _FRONT_MATTER.match(text)
    blocks: list[tuple[int, str]] = []
    for line in (text[front.end() :] if front else text).splitlines():
        m = re.match(r"^(#{1,6})\s+(.*)", line)
        if m:
            blocks.append((len(m.group(1)), m.group(2).strip()))
        elif line.strip():
            blocks.append((0, ""))
    return _sections(blocks)


MD_READERS: dict[str, Callable[[bytes], list[str]]] = {
    "markdown-it-py 4.3.0 (chosen)": md_chosen,
    "mistune 3.4.0": md_mistune,
    "regex on '#' lines": md_regex,
}


def bench_markdown(rounds: int) -> list[tuple[str, ...]]:
    labels = json.loads((DATA / "markdown" / "labels.json").read_text())
    files = {name: (DATA / "markdown" / name).read_bytes() for name in labels}
    real = [p.read_bytes() for p in sorted(Path("/usr/share/doc/nodejs").glob("*.md"))]
    rows = []
    for label, reader in MD_READERS.items():
        right = wrong = total = 0
        for name, data in files.items():
            got, want = reader(data), labels[name]
            right += sum(p in got for p in want)
            wrong += sum(p not in want for p in got)
            total += len(want)
        started = time.perf_counter()
        for _ in range(rounds):
            for data in real:
                reader(data)
        seconds = time.perf_counter() - started
        speed = f"{rounds * len(real) / seconds:.0f} ({len(real)} files)" if real else "not on this machine"
        rows.append((label, f"{right}/{total}", str(wrong), speed))
    return rows


def _table(title: str, head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(f"\n{title}")
    for r in [head, *rows]:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requirements", action="store_true", help="print the ingest-bench extra's pins and exit")
    args = p.parse_args()
    if args.requirements:
        extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        print(" ".join(extras["ingest-bench"]))
        return
    _table(
        "HTML (7 labelled docs-site pages)",
        ("reader", "main-text recall", "boilerplate kept", "pages/s"),
        bench_html(args.rounds),
    )
    _table(
        "PDF (12 labelled pages; real manuals for speed)",
        ("reader", "line recall", "pages", "pages/s", "real pages/s"),
        bench_pdf(args.rounds),
    )
    _table(
        "Markdown (2 labelled files; Node's own .md files for speed)",
        ("reader", "section paths right", "false headings", "files/s"),
        bench_markdown(args.rounds),
    )


if __name__ == "__main__":
    main()
