"""`ingest URL`: a polite crawl of one site, from its sitemap.xml or from a page (following its links).

Polite: robots.txt is obeyed, only the start URL's host is fetched (a sitemap entry or redirect elsewhere is
reported and left), at most `concurrency` requests are in flight and `max_pages` pages fetched. Each page's
ETag/Last-Modified is kept in the crawl state (`crawl/<host>.json` in the artifact store, saved after the
ingest succeeds); the next crawl sends them back, and a page the server says is unchanged (304) is neither
downloaded nor re-read: its chunks stay in the live index as they are (merge ingest)."""

from __future__ import annotations

import json
import threading
import urllib.robotparser
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urldefrag, urljoin, urlsplit

from ..domain import Document
from ..errors import ArtifactNotFound, IngestError
from ..ports import ArtifactStore
from . import ReadLimits, Skip, kind_of, read_file

MAX_SITEMAPS = 50  # sitemap files read per crawl (a sitemap index may name many)


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    status: int  # 0: no answer (see error)
    headers: dict[str, str]  # lower-case names
    body: bytes
    error: str = ""


Fetch = Callable[[str, dict[str, str]], Fetched]  # url, extra request headers


@dataclass
class CrawlResult:
    documents: list[Document] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # pages the server answered 304 for
    state: dict[str, dict[str, object]] = field(default_factory=dict)  # url → validators (and links)


def state_key(url: str) -> str:
    return f"crawl/{urlsplit(url).netloc.replace(':', '_')}.json"


def load_state(store: ArtifactStore, url: str) -> dict[str, dict[str, object]]:
    try:
        return dict(json.loads(store.get_bytes(state_key(url))))
    except ArtifactNotFound:
        return {}


def save_state(store: ArtifactStore, url: str, state: dict[str, dict[str, object]]) -> None:
    store.put_bytes(state_key(url), json.dumps(state, sort_keys=True).encode(), "application/json")


def _same_host(url: str, host: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.netloc == host


def _xml_locs(body: bytes) -> tuple[str, list[str]]:
    """(root tag, every <loc>) of a sitemap or sitemap index. No entities, no network, no huge trees."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise IngestError(f"not a sitemap: {exc}") from exc
    tag = etree.QName(root).localname
    return tag, [str(el.text).strip() for el in root.iter() if etree.QName(el).localname == "loc" and el.text]


def _links(body: bytes, base: str, host: str) -> list[str]:
    import lxml.html

    try:
        tree = lxml.html.document_fromstring(body)
    except Exception:  # noqa: BLE001 - a page we could not parse has no links to follow
        return []
    out = []
    for _el, attr, link, _pos in tree.iterlinks():
        if attr != "href":
            continue
        url = urldefrag(urljoin(base, link.strip())).url
        if _same_host(url, host):
            out.append(url)
    return out


class _Crawl:
    def __init__(
        self, start: str, fetch: Fetch, limits: ReadLimits, user_agent: str, known: dict[str, dict[str, object]]
    ) -> None:
        parts = urlsplit(start)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise IngestError(f"{start}: not an http(s) URL")
        self.start, self.fetch, self.limits, self.agent, self.known = start, fetch, limits, user_agent, known
        self.host = parts.netloc
        self.origin = f"{parts.scheme}://{self.host}"
        self.result = CrawlResult()
        self.lock = threading.Lock()  # pages are read in worker threads
        self.robots = urllib.robotparser.RobotFileParser()
        got = fetch(f"{self.origin}/robots.txt", {})
        if got.status == 200:
            self.robots.parse(got.body.decode("utf-8", "replace").splitlines())
        elif got.status == 0:
            raise IngestError(f"{self.origin}: no answer ({got.error})")
        else:  # no robots.txt (404, or any other status): everything is allowed
            self.robots.parse([])

    def skip(self, name: str, reason: str) -> None:
        with self.lock:
            self.result.skipped.append(Skip(name, reason))

    def allowed(self, url: str) -> bool:
        if self.robots.can_fetch(self.agent, url):
            return True
        self.skip(url, "disallowed by robots.txt")
        return False

    def sitemap_pages(self, max_pages: int) -> list[str]:
        pages: list[str] = []
        todo, seen = [self.start], set[str]()
        while todo and len(seen) < MAX_SITEMAPS:
            url = todo.pop(0)
            if url in seen or not self.allowed(url):
                continue
            seen.add(url)
            got = self.fetch(url, {})
            if got.status != 200:
                self.skip(url, f"sitemap not fetched (HTTP {got.status or got.error})")
                continue
            try:
                tag, locs = _xml_locs(got.body[: self.limits.max_file_bytes])
            except IngestError as exc:  # reported; the other sitemaps of an index are still read
                self.skip(url, str(exc))
                continue
            for loc in locs:
                loc = urldefrag(urljoin(url, loc)).url
                if not _same_host(loc, self.host):
                    self.skip(loc, f"ignored: the sitemap points at another host than {self.host}")
                elif tag == "sitemapindex":
                    todo.append(loc)
                elif loc not in pages:
                    pages.append(loc)
        if len(pages) > max_pages:
            self.skip(self.start, f"{len(pages) - max_pages} more pages not fetched (--max-pages {max_pages})")
        return [p for p in pages[:max_pages] if self.allowed(p)]

    def page(self, url: str, follow: bool) -> list[str]:
        """Fetch and read one page; the same-host links it has (for a crawl from a page)."""
        before = self.known.get(url, {})
        headers = {}
        if before.get("etag"):
            headers["If-None-Match"] = str(before["etag"])
        if before.get("last_modified"):
            headers["If-Modified-Since"] = str(before["last_modified"])
        got = self.fetch(url, headers)
        if got.status == 304:
            with self.lock:
                self.result.unchanged.append(url)
                self.result.state[url] = before
            links = before.get("links", [])
            return [str(x) for x in links] if isinstance(links, list) else []
        if got.status != 200:
            self.skip(url, f"HTTP {got.status}" if got.status else f"no answer ({got.error})")
            return []
        if not _same_host(got.url, self.host):
            self.skip(url, f"ignored: redirected to another host ({urlsplit(got.url).netloc})")
            return []
        ctype = got.headers.get("content-type", "")
        kind = kind_of(urlsplit(got.url).path, ctype)
        if kind is None or kind == "jsonl":
            self.skip(url, f"not a document ({ctype or 'no content type'})")
            return []
        if len(got.body) > self.limits.max_file_bytes:
            limit = self.limits.max_file_bytes / 2**20
            self.skip(url, f"refused: over the {limit:g} MB limit (RAG_INGEST_MAX_FILE_MB)")
            return []
        read = read_file(url, got.body, self.limits, kind=kind, url=got.url)
        links = _links(got.body, got.url, self.host) if follow and kind == "html" else []
        entry: dict[str, object] = {
            key: got.headers[header]
            for key, header in (("etag", "etag"), ("last_modified", "last-modified"))
            if header in got.headers
        }
        if links:
            entry["links"] = links
        with self.lock:
            self.result.documents += read.documents
            self.result.skipped += read.skipped
            if entry and read.documents:
                self.result.state[url] = entry
        return links

    def run_pages(self, pool: ThreadPoolExecutor, urls: Iterable[str], follow: bool) -> list[str]:
        found: list[str] = []
        for links in pool.map(lambda u: self.page(u, follow), urls):
            found += links
        return found


def crawl(
    start: str,
    fetch: Fetch,
    limits: ReadLimits,
    *,
    user_agent: str,
    max_pages: int,
    concurrency: int,
    known: dict[str, dict[str, object]] | None = None,
) -> CrawlResult:
    """Crawl one site from `start`: a sitemap (a URL ending in .xml) or a page (its links are followed,
    breadth first). `known` is the last crawl's state: its validators make unchanged pages 304s."""
    c = _Crawl(start, fetch, limits, user_agent, known or {})
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        if urlsplit(start).path.lower().endswith(".xml"):
            c.run_pages(pool, c.sitemap_pages(max_pages), follow=False)
        else:
            seen = {urldefrag(start).url}
            wave = [u for u in seen if c.allowed(u)]
            fetched = 0
            while wave:
                wave = wave[: max_pages - fetched]
                fetched += len(wave)
                links = c.run_pages(pool, wave, follow=True)
                wave = []
                for url in links:
                    if url not in seen:
                        seen.add(url)
                        if c.allowed(url):
                            wave.append(url)
                if fetched >= max_pages and wave:
                    c.skip(start, f"{len(wave)} more linked pages not fetched (--max-pages {max_pages})")
                    break
    c.result.documents.sort(key=lambda d: d.doc_id)  # workers finish in any order; ids are URLs
    return c.result
