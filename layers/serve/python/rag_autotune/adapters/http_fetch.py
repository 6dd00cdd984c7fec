"""GET over HTTP(S) with urllib, for the crawler: bounded body, no exceptions for HTTP statuses."""

from __future__ import annotations

import urllib.error
import urllib.request

from ..readers.crawl import Fetched


def http_fetcher(user_agent: str, timeout_s: float, max_bytes: int):  # type: ignore[no-untyped-def]
    """A crawl.Fetch: the body is read up to max_bytes + 1 (one more says "too large" without reading it
    all); no Accept-Encoding is sent, so no server compresses and nothing inflates here."""

    def fetch(url: str, headers: dict[str, str]) -> Fetched:
        req = urllib.request.Request(url, headers={"User-Agent": user_agent, **headers})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - http(s) only, checked by crawl
                body = resp.read(max_bytes + 1)
                return Fetched(resp.geturl(), resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)
        except urllib.error.HTTPError as exc:
            return Fetched(exc.geturl() or url, exc.code, {k.lower(): v for k, v in exc.headers.items()}, b"")
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return Fetched(url, 0, {}, b"", error=str(reason)[:200])

    return fetch
