"""Build a retrieval corpus with known answers from the installed man pages.

Each page becomes a document {"id": "open.2", "title": "open(2)", "text": ...} whose text is the page
after its NAME section. The NAME description ("open and possibly create a file") becomes a query whose
relevant documents are all pages sharing that description. Only the stdlib, groff and col are needed.

    python scripts/man_corpus.py --sections 2,3,5,7 --limit 2000 --seed 0 \
        --out-docs corpus.jsonl --out-queries golden.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from multiprocessing import Pool
from pathlib import Path
from typing import NamedTuple, TypedDict

MAN_DIR = Path("/usr/share/man")
WIDTH = 100
ENV = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "MANWIDTH": str(WIDTH)}
# groff: tbl preprocessor, no hyphenation (keeps words whole), plain old-style output for `col -b`.
GROFF = ["groff", "-t", "-man", "-Tutf8", "-P-c", f"-rLL={WIDTH}n", "-rHY=0"]
BODY_INDENT = 7  # man macros indent running text by 7; anything less is a (sub)heading
# "name - description": \- renders as "-" but tolerate the Unicode dashes groff may emit.
NAME_SEP = re.compile(r"\s+[-\u2010\u2011\u2012\u2013\u2014\u2212]+\s+")
WS = re.compile(r"\s+")
SPDX = re.compile(r"SPDX-License-Identifier:\s*(\S+)")
COPYRIGHT = re.compile(r"^\.?\\\".*?(copyright\b.*)$", re.IGNORECASE | re.MULTILINE)
# Pages that re-enable hyphenation leave "cre‐ ation" once lines are joined.
BROKEN_WORD = re.compile(r"(\w)\u2010 (\w)")
DASHES = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2212": "-"})

Rendered = tuple[list[str], str, str, str]  # names, section, description, body


class Doc(TypedDict):
    id: str  # "open.2"
    title: str  # "open(2)"
    text: str


class Query(TypedDict):
    query: str  # the NAME description
    relevant: list[str]  # doc ids


def norm_ws(s: str) -> str:
    return WS.sub(" ", s).strip()


def clean(s: str) -> str:
    """Collapse whitespace, rejoin hyphenated words, map groff's Unicode hyphen/minus to ASCII '-'."""
    return BROKEN_WORD.sub(r"\1\2", norm_ws(s)).translate(DASHES)


def section_of(path: Path) -> str:
    """'open.2.gz' -> '2'; 'SSL_new.3ssl.gz' -> '3ssl'."""
    return page_id(path).rsplit(".", 1)[-1]


def page_id(path: Path) -> str:
    """'open.2.gz' -> 'open.2' (the file name is unique within a man dir, unlike NAME entries)."""
    return path.name.removesuffix(".gz")


def read_source(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def is_redirect(source: str) -> bool:
    """True when the page is only a `.so other` include (plus comments/blank lines)."""
    lines = [ln.strip() for ln in source.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(('.\\"', "'\\\""))]
    return len(lines) == 1 and lines[0].startswith(".so ")


def spdx_license(source: str) -> str | None:
    """The page's `SPDX-License-Identifier` (Linux man-pages >= 6.0 tag every page), if any."""
    m = SPDX.search(source)
    return m.group(1) if m else None


def copyright_lines(source: str) -> list[str]:
    """'Copyright (C) 1992 Drew Eckhardt;' ... from the page's leading comments (for attribution)."""
    return [norm_ws(m.group(1)).rstrip(" ;") for m in COPYRIGHT.finditer(source)]


def is_linux_man_pages(source: str) -> bool:
    """Page from the Linux man-pages project (Debian packages manpages / manpages-dev)."""
    th = next((ln for ln in source.splitlines() if ln.startswith(".TH ")), "")
    return "Linux man-pages" in th


def render_source(source: str, cwd: Path = MAN_DIR) -> str:
    """Render troff source to plain text (groff | col -bx). `cwd` resolves `.so man3/x.3` includes."""
    groff = subprocess.run(GROFF, input=source.encode(), capture_output=True, env=ENV, cwd=cwd, timeout=60)
    col = subprocess.run(["col", "-bx"], input=groff.stdout, capture_output=True, env=ENV, timeout=60)
    return col.stdout.decode("utf-8", errors="replace")


def parse_name_line(text: str) -> tuple[list[str], str] | None:
    """'open, openat, creat - open and possibly create a file' -> (['open', 'openat', 'creat'], desc)."""
    parts = NAME_SEP.split(clean(text), maxsplit=1)
    if len(parts) != 2:
        return None
    names = [n.strip() for n in parts[0].split(",") if n.strip()]
    desc = parts[1].strip()
    return (names, desc) if names and desc else None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _strip_header_footer(lines: list[str]) -> list[str]:
    """Drop the running header ('open(2)  System Calls Manual  open(2)') and footer lines."""
    idx = [i for i, ln in enumerate(lines) if ln.strip()]
    if not idx:
        return []
    first, last = idx[0], idx[-1]
    drop = set()
    if lines[first].strip() != "NAME" and _indent(lines[first]) == 0:
        drop.add(first)
    # A footer sits at column 0 and, unlike a heading, is not ALL CAPS.
    if last != first and _indent(lines[last]) == 0 and not lines[last].strip().isupper():
        drop.add(last)
    return [ln for i, ln in enumerate(lines) if i not in drop]


def format_body(lines: Iterable[str]) -> str:
    """Normalize whitespace: one line per paragraph, paragraphs separated by a blank line.

    Headings (SH/SS) sit on their own line directly above the paragraph they introduce.
    """
    blocks: list[str] = []
    heads: list[str] = []
    cur: list[str] = []

    def flush() -> None:
        if cur:
            blocks.append("\n".join([*heads, clean(" ".join(cur))]))
            heads.clear()
            cur.clear()

    for ln in lines:
        if not ln.strip():
            flush()
        elif _indent(ln) < BODY_INDENT:
            flush()
            heads.append(clean(ln))
        else:
            cur.append(ln)
    flush()
    if heads:  # trailing heading(s) without text
        blocks.append("\n".join(heads))
    return "\n\n".join(blocks)


def parse_rendered(text: str) -> tuple[list[str], str, str] | None:
    """Split a rendered page into (names, description, body after the NAME section)."""
    lines = _strip_header_footer([ln.rstrip() for ln in text.splitlines()])
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "NAME" and _indent(ln) == 0)
    except StopIteration:
        return None
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].strip() and _indent(lines[i]) == 0),
        len(lines),
    )
    parsed = parse_name_line(" ".join(lines[start + 1 : end]))
    if parsed is None:
        return None
    body = format_body(lines[end:])
    return (parsed[0], parsed[1], body) if body else None


def render_page(path: str | Path) -> Rendered | None:
    """Render one page file; None for `.so` redirects and pages without a usable NAME section."""
    path = Path(path)
    source = read_source(path)
    if is_redirect(source):
        return None
    parsed = parse_rendered(render_source(source, cwd=path.parent.parent))
    if parsed is None:
        return None
    names, desc, body = parsed
    return names, section_of(path), desc, body


class _Page(NamedTuple):
    path: Path
    digest: str  # of the troff source, to skip duplicate files
    man_pages: bool  # from the Linux man-pages project
    license: str | None  # SPDX id
    rendered: Rendered | None


def _work(path: Path) -> _Page:
    """Pool worker: read, classify and render one page."""
    source = read_source(path)
    digest = hashlib.sha1(source.encode()).hexdigest()
    if is_redirect(source):
        return _Page(path, digest, False, None, None)
    try:
        rendered = render_page(path)
    except (subprocess.SubprocessError, OSError):
        rendered = None
    return _Page(path, digest, is_linux_man_pages(source), spdx_license(source), rendered)


def list_pages(sections: Sequence[str], man_dir: Path = MAN_DIR) -> list[Path]:
    """Real (non-symlink) page files of the English man dirs, e.g. man3/*.3, *.3ssl, *.3perl."""
    out: list[Path] = []
    for sec in sections:
        d = man_dir / f"man{sec}"
        if d.is_dir():
            out += [p for p in d.iterdir() if p.is_file() and not p.is_symlink()]
    return sorted(out)


def truncate(text: str, max_chars: int) -> str:
    """Cut at a paragraph (else word) boundary at or before max_chars."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    para = cut.rfind("\n\n")
    if para >= max_chars // 2:
        return cut[:para]
    return cut.rsplit(" ", 1)[0]


def group_queries(docs: Sequence[Doc], descs: dict[str, str]) -> dict[str, list[str]]:
    """Map normalized description -> sorted doc ids sharing it (each key is one query)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for d in docs:
        groups[norm_ws(descs[d["id"]]).lower()].append(d["id"])
    return {k: sorted(v) for k, v in groups.items()}


def sample_groups(
    groups: dict[str, list[str]],
    limit: int | None,
    seed: int,
    section_limits: dict[str, int] | None = None,
) -> list[str]:
    """Pick whole query groups (so relevant sets stay complete) in a seeded order until `limit` docs.

    `section_limits` caps docs per base section ('3' covers 3ssl, 3perl, ...).
    """
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    total, per_sec = 0, Counter[str]()
    chosen: list[str] = []
    for k in keys:
        ids = groups[k]
        if limit is not None and total + len(ids) > limit:
            continue
        need = Counter(_base_section(i) for i in ids)
        if section_limits and any(s in section_limits and per_sec[s] + n > section_limits[s] for s, n in need.items()):
            continue
        chosen.append(k)
        total += len(ids)
        per_sec.update(need)
        if limit is not None and total == limit:
            break
    return sorted(chosen)


def _base_section(doc_id: str) -> str:
    return doc_id.rsplit(".", 1)[-1][:1]


def build(
    sections: Sequence[str],
    limit: int | None,
    seed: int,
    *,
    max_chars: int = 6000,
    man_dir: Path = MAN_DIR,
    man_pages_only: bool = False,
    licenses: Collection[str] | None = None,
    section_limits: dict[str, int] | None = None,
    max_relevant: int = 10,
    jobs: int = 2,
) -> tuple[list[Doc], list[Query]]:
    """Render the pages and return (docs, queries), both sorted, docs capped at `limit`.

    Descriptions shared by more than `max_relevant` pages (e.g. libtasn1's 60 x "API function") make
    useless queries; those pages are dropped altogether. `licenses` keeps only pages whose SPDX id is
    listed; `man_pages_only` only pages of the Linux man-pages project.
    """
    paths = list_pages(sections, man_dir)
    seen_src: set[str] = set()
    seen_body: set[str] = set()
    docs: list[Doc] = []
    descs: dict[str, str] = {}
    with Pool(jobs) as pool:
        # imap keeps input (sorted) order, so "first of duplicates wins" is deterministic.
        for page in pool.imap(_work, paths, chunksize=8):
            if (
                page.digest in seen_src
                or page.rendered is None
                or (man_pages_only and not page.man_pages)
                or (licenses is not None and page.license not in licenses)
            ):
                continue
            seen_src.add(page.digest)
            path, (_names, sec, desc, body) = page.path, page.rendered
            text = truncate(body, max_chars)
            if text in seen_body:
                continue
            seen_body.add(text)
            pid = page_id(path)
            docs.append({"id": pid, "title": f"{pid.rsplit('.', 1)[0]}({sec})", "text": text})
            descs[pid] = desc

    groups = {k: v for k, v in group_queries(docs, descs).items() if len(v) <= max_relevant}
    keep = sample_groups(groups, limit, seed, section_limits)
    kept_ids = {i for k in keep for i in groups[k]}
    docs = sorted((d for d in docs if d["id"] in kept_ids), key=lambda d: d["id"])
    queries: list[Query] = [{"query": norm_ws(descs[groups[k][0]]), "relevant": groups[k]} for k in keep]
    queries.sort(key=lambda q: q["query"].lower())
    return docs, queries


def attribution(doc_ids: Iterable[str], man_dir: Path = MAN_DIR) -> dict[str, list[str]]:
    """Copyright lines per doc id, read back from the page sources (processed copies must credit them)."""
    out: dict[str, list[str]] = {}
    for pid in doc_ids:
        path = man_dir / f"man{_base_section(pid)}" / f"{pid}.gz"
        out[pid] = copyright_lines(read_source(path)) if path.exists() else []
    return out


def write_jsonl(path: Path, rows: Iterable[Doc] | Iterable[Query]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _parse_section_limits(s: str | None) -> dict[str, int] | None:
    """'2=120,7=90' -> {'2': 120, '7': 90}."""
    if not s:
        return None
    return {k.strip(): int(v) for k, v in (p.split("=", 1) for p in s.split(","))}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="2,3,5,7", help="comma-separated man sections")
    ap.add_argument("--limit", type=int, default=None, help="max docs (whole query groups are kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--section-limits", default=None, help="per-section doc caps, e.g. 2=130,7=90,3=50")
    ap.add_argument("--max-chars", type=int, default=6000, help="truncate each doc text")
    ap.add_argument("--man-pages-only", action="store_true", help="only Linux man-pages project pages")
    ap.add_argument("--max-relevant", type=int, default=10, help="drop descriptions shared by more pages")
    ap.add_argument("--licenses", default=None, help="keep only these SPDX ids, e.g. Linux-man-pages-copyleft")
    ap.add_argument("--man-dir", type=Path, default=MAN_DIR)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out-docs", type=Path, required=True)
    ap.add_argument("--out-queries", type=Path, required=True)
    ap.add_argument("--out-attribution", type=Path, default=None, help="write per-doc copyright lines (md)")
    a = ap.parse_args(argv)

    t0 = time.monotonic()
    docs, queries = build(
        [s.strip() for s in a.sections.split(",") if s.strip()],
        a.limit,
        a.seed,
        max_chars=a.max_chars,
        man_dir=a.man_dir,
        man_pages_only=a.man_pages_only,
        licenses=a.licenses.split(",") if a.licenses else None,
        section_limits=_parse_section_limits(a.section_limits),
        max_relevant=a.max_relevant,
        jobs=a.jobs,
    )
    write_jsonl(a.out_docs, docs)
    write_jsonl(a.out_queries, queries)
    if a.out_attribution:
        credits = attribution((d["id"] for d in docs), a.man_dir)
        a.out_attribution.write_text(
            "".join(
                f"- {pid}: {'; '.join(lines) or 'no copyright line in source'}\n" for pid, lines in credits.items()
            ),
            encoding="utf-8",
        )
    multi = sum(1 for q in queries if len(q["relevant"]) > 1)
    print(
        f"{len(docs)} docs, {len(queries)} queries ({multi} with >1 relevant) in {time.monotonic() - t0:.1f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
