"""README "Your docs": each command as written, on fakes for the AWS side and a real local HTTP server for
the site (on a free port: the test's server puts it in place of 8765, in the commands and the sitemap)."""

from __future__ import annotations

import functools
import re
import shlex
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag_autotune.cli import build_parser, cmd_ingest
from rag_autotune.paths import REPO
from rag_autotune.settings import Settings
from rag_autotune.versions import read_manifest
from tests.integration.test_crawl import _runtime

README_PORT = "8765"


def your_docs_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    start = text.index("## Your docs")
    block = re.search(r"```bash\n(.*?)```", text[start : text.index("\n## ", start + 1)], re.S)
    assert block
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    root = REPO / "demo" / "docs" / "site"

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def send_head(self):  # type: ignore[no-untyped-def]
            if self.path != "/sitemap.xml":
                return super().send_head()
            body = (root / "sitemap.xml").read_bytes().replace(README_PORT.encode(), port.encode())
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            import io

            return io.BytesIO(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    port = str(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield port
    server.shutdown()
    server.server_close()


def test_every_your_docs_command_works_as_written(site: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(REPO)
    rt = _runtime(Settings())
    commands = your_docs_commands()
    assert commands[-1] == "kill %1" and "http.server 8765" in commands[-4]
    ingests = [c for c in commands if c.startswith(".venv/bin/rag-autotune ingest ")]
    assert len(ingests) == 6
    for command in ingests:
        argv = shlex.split(command.replace(README_PORT, site))[1:]
        args = build_parser().parse_args(argv)
        if not args.path.startswith("http"):
            assert Path(args.path).exists(), args.path
        assert cmd_ingest(rt, args) == 0, command  # type: ignore[arg-type]
        out, err = capsys.readouterr()
        assert "live:" in out or "nothing changed" in out, (command, out, err)
    manifest = read_manifest(rt.store)[0]  # type: ignore[index]
    chunks = list(rt.index.chunks(manifest.live.index_version))
    by_doc = {c.doc_id: c for c in chunks}
    assert by_doc["getting-started.md"].title.startswith("Getting started")
    assert any(c.section == "Install › From a clone" for c in chunks)
    assert {c.page for c in chunks if c.doc_id == "manual.pdf"} == {1, 2}
    assert by_doc["install.html"].url == f"http://127.0.0.1:{README_PORT}/install.html"  # its canonical link
    assert f"http://127.0.0.1:{site}/install.html" in by_doc  # crawled too, under its URL
    assert "pipe.2" in by_doc
