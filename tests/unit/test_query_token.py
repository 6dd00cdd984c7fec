"""The query id /ask returns is the signed record of what it showed (query_token.py): /feedback reads it back
exactly, and refuses anything it did not issue, anything changed, and anything older than the vote window."""

from __future__ import annotations

import base64
import zlib

import pytest

from rag_autotune.domain import Citation, QueryLog, VersionPair
from rag_autotune.errors import ConflictError, UnknownQuery
from rag_autotune.query_token import KEY_KEY, QueryTokens, load_key
from tests.fakes import MemoryArtifactStore

KEY = b"k" * 32
T0 = 1_700_000_000.0
SHOWN = QueryLog(
    "3f2a9c",
    "wie öffne ich eine Datei? ✓",
    VersionPair("v3", "v3-c9"),
    (Citation("open.2", "open.2#0", "open(2)", "snippet", 0.9, 1), Citation("fopen.3", "fopen.3#4", "f", "", 0.5, 2)),
    T0,
    "cli-42",
    tenant="apikey-k7",
)


def tokens(now: float = T0 + 60, key: bytes = KEY) -> QueryTokens:
    return QueryTokens(key, max_age_s=86400, clock=lambda: now)


def test_what_was_shown_reads_back() -> None:
    got = tokens().read(tokens().issue(SHOWN))
    assert (got.query_id, got.query, got.pair, got.created_at, got.client_id, got.tenant) == (
        "3f2a9c",
        SHOWN.query,
        SHOWN.pair,
        T0,
        "cli-42",
        "apikey-k7",
    )
    assert [(c.doc_id, c.chunk_id, c.rank) for c in got.citations] == [
        ("open.2", "open.2#0", 1),
        ("fopen.3", "fopen.3#4", 2),
    ]


def test_a_long_question_fits_the_feedback_schema() -> None:
    long = QueryLog("id", "x y z " * 333, SHOWN.pair, SHOWN.citations * 10, T0)
    assert len(tokens().issue(long)) < 8192


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: t.replace("q1.", "q2.", 1),  # another format
        lambda t: (
            "q1." + base64.urlsafe_b64encode(zlib.compress(b'{"id":"x"}')).decode().rstrip("=") + "." + t.split(".")[2]
        ),
        lambda t: "3f2a9c",  # a bare id, as the query log used to hand out
        lambda t: "",
        lambda t: "q1..",
        lambda t: tokens(key=b"o" * 32).issue(SHOWN),  # another deployment's key
    ],
)
def test_anything_not_issued_with_this_key_is_an_unknown_query(forge) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownQuery):
        tokens().read(forge(tokens().issue(SHOWN)))


def test_older_than_the_vote_window_is_an_unknown_query() -> None:
    token = tokens().issue(SHOWN)
    assert tokens(now=T0 + 86400).read(token).query_id == "3f2a9c"
    with pytest.raises(UnknownQuery, match="older"):
        tokens(now=T0 + 86401).read(token)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError):
        QueryTokens(b"short", max_age_s=1)


def test_the_key_is_created_once_and_concurrent_first_callers_agree() -> None:
    store = MemoryArtifactStore()
    first = load_key(store, new_key=lambda: b"a" * 32)
    assert first == b"a" * 32 and load_key(store, new_key=lambda: b"b" * 32) == first

    class LosesTheRace(MemoryArtifactStore):
        """Another process creates the key between this one's read and its create-only write."""

        def put_if(self, key: str, data: bytes, expected_etag: str | None) -> str:
            super().put_if(key, b"c" * 32, None)
            raise ConflictError(key)

    racing = LosesTheRace()
    assert load_key(racing, new_key=lambda: b"d" * 32) == b"c" * 32 == racing.get_bytes(KEY_KEY)


def test_the_error_never_repeats_the_id_it_holds_the_question() -> None:
    token = tokens().issue(SHOWN)
    with pytest.raises(UnknownQuery) as info:
        tokens().read(token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert token[3:13] not in str(info.value)
