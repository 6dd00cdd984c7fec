"""The query id /ask returns is a signed record of what it showed; /feedback checks a vote against it.

A vote is accepted only on a document its query showed, so /feedback must know what /ask showed. Stored in
DynamoDB, that was one write on every question, answered or voted on or not, on /ask's critical path: on the
embedded default the slowest part of /ask. Instead the record travels with the answer: the query id *is* the
record (the question, the versions that answered, the cited documents, when and for whom), signed with a key
only the API holds. /ask writes nothing; /feedback reads nothing before it writes the vote, which carries
what training and the memory need. A changed or forged id fails its signature and is answered as an unknown
query, as is one older than the vote window (`vote_window_days`).

Format: `q1.<payload>.<signature>`, the payload zlib-compressed JSON, both base64url without padding. The
key is 32 random bytes kept in the artifact bucket (`KEY_KEY`), created by the first process that needs it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import time
import zlib
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, ValidationError

from .domain import Citation, QueryLog, VersionPair
from .errors import ArtifactNotFound, ConflictError, UnknownQuery
from .ports import ArtifactStore

KEY_KEY = "config/query-token.key"
PREFIX = "q1"
_SIG_BYTES = 16
_MAX_PAYLOAD = 1 << 16  # decompressed: a token can't make /feedback inflate more than this


class _Shown(BaseModel):
    """The signed payload: what a vote on this query needs, in short keys (the id goes back and forth)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    q: str  # the question
    m: str  # model version
    i: str  # index version
    c: list[tuple[str, str, int]]  # cited (doc_id, chunk_id, rank)
    t: float  # asked at, epoch seconds
    cl: str  # client id
    tn: str  # tenant


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class QueryTokens:
    def __init__(self, key: bytes, max_age_s: float, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 32:
            raise ValueError("a query-token key has at least 32 bytes")
        self._key, self._max_age_s, self._clock = key, max_age_s, clock

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, f"{PREFIX}.{body}".encode(), hashlib.sha256).digest()[:_SIG_BYTES])

    def issue(self, shown: QueryLog) -> str:
        payload = _Shown(
            id=shown.query_id,
            q=shown.query,
            m=shown.pair.model_version,
            i=shown.pair.index_version,
            c=[(c.doc_id, c.chunk_id, c.rank) for c in shown.citations],
            t=shown.created_at,
            cl=shown.client_id,
            tn=shown.tenant,
        )
        body = _b64(zlib.compress(payload.model_dump_json().encode(), 6))
        return f"{PREFIX}.{body}.{self._sign(body)}"

    def read(self, token: str) -> QueryLog:
        """What the query showed. Raises UnknownQuery for anything not issued with this key, or too old."""
        # Not the id itself in the message: it holds the question, and errors are logged.
        unknown = UnknownQuery("no query with this id: it was not issued by this deployment, or was changed")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX or not hmac.compare_digest(parts[2], self._sign(parts[1])):
            raise unknown
        try:
            inflate = zlib.decompressobj()
            raw = inflate.decompress(_unb64(parts[1]), _MAX_PAYLOAD)
            if inflate.unconsumed_tail:
                raise unknown
            shown = _Shown.model_validate(json.loads(raw))
        except (ValueError, zlib.error, ValidationError) as exc:  # signed by us, so only a bug gets here
            raise unknown from exc
        if self._clock() - shown.t > self._max_age_s:
            raise UnknownQuery(f"query {shown.id!r} is older than the vote window; ask again")
        return QueryLog(
            query_id=shown.id,  # votes and their dedupe keys carry the short id, not the whole token
            query=shown.q,
            pair=VersionPair(shown.m, shown.i),
            citations=tuple(
                Citation(doc_id=d, chunk_id=ch, title="", snippet="", score=0.0, rank=r) for d, ch, r in shown.c
            ),
            created_at=shown.t,
            client_id=shown.cl,
            tenant=shown.tn,
        )


def load_key(store: ArtifactStore, new_key: Callable[[], bytes] = lambda: os.urandom(32)) -> bytes:
    """The bucket's query-token key; the first caller creates it (create-only: concurrent first callers agree)."""
    try:
        return store.get_bytes(KEY_KEY)
    except ArtifactNotFound:
        pass
    with contextlib.suppress(ConflictError):  # another process created it first: use theirs
        store.put_if(KEY_KEY, new_key(), expected_etag=None)
    return store.get_bytes(KEY_KEY)
