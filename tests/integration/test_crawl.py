"""`ingest URL` against a real HTTP server on 127.0.0.1 serving a small site built here; no outside host."""

from __future__ import annotations

import argparse
import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from rag_autotune.adapters.http_fetch import http_fetcher
from rag_autotune.cli import cmd_ingest
from rag_autotune.readers import ReadLimits
from rag_autotune.readers.crawl import crawl, load_state
from rag_autotune.settings import Settings
from rag_autotune.versions import read_manifest
from tests.fakes import HashEncoder, MemoryArtifactStore, MemoryVectorIndex
from tests.pdf_files import make_pdf

AGENT = "rag-autotune-test"


def _page(title: str, body: str, links: str = "") -> bytes:
    return (
        f"<html><head><title>{title}</title></head><body><nav><a href='/'>Home</a>{links}</nav>"
        f"<main><h1>{title}</h1><p>{body}</p></main><footer>Copyright Acme</footer></body></html>"
    ).encode()


class Site:
    """The pages, and every request the server saw: (path, status)."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, bytes]] = {}
        self.log: list[tuple[str, int]] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.url = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with site.lock:
                    site.in_flight += 1
                    site.max_in_flight = max(site.max_in_flight, site.in_flight)
                try:
                    self._answer()
                finally:
                    with site.lock:
                        site.in_flight -= 1

            def _answer(self) -> None:
                found = site.pages.get(self.path)
                if found is None:
                    status, ctype, body, etag = 404, "text/plain", b"no", ""
                else:
                    ctype, body = found
                    etag = '"' + hashlib.sha1(body).hexdigest()[:12] + '"'
                    status = 304 if self.headers.get("If-None-Match") == etag else 200
                with site.lock:
                    site.log.append((self.path, status))
                self.send_response(status)
                if etag:
                    self.send_header("ETag", etag)
                if status != 304:
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

        return Handler

    def fetched(self, status: int = 200) -> list[str]:
        return sorted(p for p, s in self.log if s == status and p != "/robots.txt")


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), s.handler())
    s.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    html = "text/html; charset=utf-8"
    s.pages = {
        "/robots.txt": ("text/plain", b"User-agent: *\nDisallow: /private/\n"),
        "/": (
            "text/html",
            _page(
                "Acme docs",
                "Welcome to the Acme agent documentation. " * 5,
                "<a href='/install.html'>Install</a><a href='/private/x.html'>x</a>",
            ),
        ),
        "/install.html": (
            html,
            _page(
                "Install",
                "Install the agent with the package manager. " * 5,
                "<a href='/configure.html#top'>Configure</a><a href='https://elsewhere.test/'>e</a>",
            ),
        ),
        "/configure.html": (html, _page("Configure", "Set the token in the agent configuration file. " * 5)),
        "/private/x.html": (html, _page("Secret", "Not for crawlers. " * 5)),
        "/manual.pdf": ("application/pdf", make_pdf(["Manual page one about tokens.", "Page two about restarts."])),
        "/sitemap.xml": (
            "application/xml",
            f"""<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
            <url><loc>{s.url}/install.html</loc></url><url><loc>{s.url}/configure.html</loc></url>
            <url><loc>{s.url}/manual.pdf</loc></url><url><loc>{s.url}/private/x.html</loc></url>
            <url><loc>https://elsewhere.test/phish.html</loc></url><url><loc>{s.url}/gone.html</loc></url>
            </urlset>""".encode(),
        ),
    }
    yield s
    server.shutdown()
    server.server_close()


def _crawl(site: Site, start: str, known: dict | None = None, max_pages: int = 50, concurrency: int = 2):  # type: ignore[no-untyped-def, type-arg]
    fetch = http_fetcher(AGENT, 5.0, 1 << 20)
    return crawl(
        start, fetch, ReadLimits(), user_agent=AGENT, max_pages=max_pages, concurrency=concurrency, known=known
    )


def test_a_sitemap_crawl_reads_each_page_obeys_robots_and_ignores_other_hosts(site: Site) -> None:
    result = _crawl(site, f"{site.url}/sitemap.xml")
    ids = [d.doc_id.removeprefix(site.url) for d in result.documents]
    assert ids == ["/configure.html", "/install.html", "/manual.pdf"]
    pdf = next(d for d in result.documents if d.doc_id.endswith(".pdf"))
    assert [p.page for p in pdf.parts] == [1, 2]
    assert all(d.url == d.doc_id for d in result.documents)  # the link a citation carries
    reasons = {s.name.removeprefix(site.url): s.reason for s in result.skipped}
    assert reasons["https://elsewhere.test/phish.html"].startswith("ignored: the sitemap points at another host")
    assert reasons["/private/x.html"] == "disallowed by robots.txt"
    assert reasons["/gone.html"] == "HTTP 404"
    assert "/private/x.html" not in site.fetched()  # never requested
    assert site.max_in_flight <= 2


def test_a_second_crawl_sends_the_validators_and_rereads_only_the_changed_page(site: Site) -> None:
    first = _crawl(site, f"{site.url}/sitemap.xml")
    site.pages["/install.html"] = ("text/html", _page("Install", "Install the agent from the new repository. " * 5))
    site.log.clear()
    second = _crawl(site, f"{site.url}/sitemap.xml", known=first.state)
    assert [d.doc_id.removeprefix(site.url) for d in second.documents] == ["/install.html"]
    assert sorted(u.removeprefix(site.url) for u in second.unchanged) == ["/configure.html", "/manual.pdf"]
    assert site.fetched(304) == ["/configure.html", "/manual.pdf"]
    assert "new repository" in second.documents[0].text


def test_a_crawl_from_the_root_follows_same_host_links_up_to_max_pages(site: Site) -> None:
    result = _crawl(site, f"{site.url}/")
    assert [d.doc_id.removeprefix(site.url) for d in result.documents] == ["/", "/configure.html", "/install.html"]
    assert not any("elsewhere" in p for p in site.fetched())
    site.log.clear()
    capped = _crawl(site, f"{site.url}/", max_pages=2)
    assert len(capped.documents) == 2
    assert any("--max-pages 2" in s.reason for s in capped.skipped)


def _runtime(settings: Settings) -> SimpleNamespace:
    store, index = MemoryArtifactStore(), MemoryVectorIndex()
    store.put_bytes("models/v0/meta.json", b"{}")
    return SimpleNamespace(
        store=store,
        index=index,
        settings=settings,
        load_bulk_encoder=lambda v: HashEncoder(v),
        ingest_fan_out=lambda **_: None,  # these corpora are one shard or less: embedded in the CLI's process
    )


def test_ingest_url_builds_a_version_keeps_the_state_and_skips_an_unchanged_site(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = _runtime(Settings(crawl_user_agent=AGENT))
    args = argparse.Namespace(path=f"{site.url}/sitemap.xml", replace=False, strict=False, max_pages=None)
    assert cmd_ingest(rt, args) == 0  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    assert "(3 documents, 4 chunks)" in out and "skipped 3 input(s)" in out
    assert "another host" in err and "robots.txt" in err
    chunks = rt.index.chunks(read_manifest(rt.store)[0].live.index_version)  # type: ignore[index]
    assert {(c.doc_id.removeprefix(site.url), c.page) for c in chunks if c.page} == {
        ("/manual.pdf", 1),
        ("/manual.pdf", 2),
    }
    assert set(load_state(rt.store, site.url)) == {
        f"{site.url}{p}" for p in ("/install.html", "/configure.html", "/manual.pdf")
    }

    before = read_manifest(rt.store)
    assert cmd_ingest(rt, args) == 0  # type: ignore[arg-type]
    assert "nothing changed" in capsys.readouterr().out
    assert read_manifest(rt.store) == before  # no new version for an unchanged site


def test_cli_ingest_errors_are_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rag_autotune import cli

    rt = _runtime(Settings())
    monkeypatch.setattr(cli, "_connect", lambda settings: None)
    monkeypatch.setattr(cli, "Runtime", lambda settings: rt)
    (tmp_path / "ok.md").write_text("# Ok\n\ntext\n")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 junk")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    for argv, says in [
        (["ingest", str(tmp_path / "missing")], "no such file or folder"),
        (["ingest", str(tmp_path), "--strict"], "--strict: nothing ingested, 1 input(s) skipped: bad.pdf: malformed"),
        (["ingest", f"http://127.0.0.1:{port}/sitemap.xml"], "no answer"),
    ]:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error (ingest_error): ") and says in err, err
    assert read_manifest(rt.store) is None  # nothing was ingested
    assert cli.main(["ingest", str(tmp_path)]) == 0  # without --strict the good file goes in
    out, err = capsys.readouterr()
    assert "skipped: bad.pdf: malformed PDF" in err and "(1 documents, 1 chunks)" in out
