"""The live pointer: manifest.json in the artifact store, moved only by conditional writes.

Version names: models are v0, v1, ...; an index is "<model>-c<generation>", the corpus generation embedded by
that model (v3-c4 = corpus generation 4 embedded with v3). The pair in the manifest always matches.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import get_args

from .domain import IndexStats, Manifest, RetrievalMode, VersionPair
from .errors import ArtifactNotFound, ConflictError, CorruptArtifact, NotReady
from .ports import ArtifactStore

MANIFEST_KEY = "manifest.json"
BASE_VERSION = "v0"  # the packaged base encoder, as `rag-autotune bootstrap` uploads it
_MODEL_RE = re.compile(r"^v(\d+)$")
_INDEX_RE = re.compile(r"^(v\d+)-c(\d+)$")


def model_prefix(version: str) -> str:
    return f"models/{version}/"


def index_version(model_version: str, generation: int) -> str:
    return f"{model_version}-c{generation}"


def corpus_generation(index_ver: str) -> int:
    m = _INDEX_RE.match(index_ver)
    if not m:
        raise ValueError(f"not an index version: {index_ver!r}")
    return int(m.group(2))


def next_model_version(existing: list[str]) -> str:
    numbers = [int(m.group(1)) for v in existing if (m := _MODEL_RE.match(v))]
    return f"v{max(numbers, default=-1) + 1}"


def next_generation(existing_indexes: list[str]) -> int:
    gens = [int(m.group(2)) for v in existing_indexes if (m := _INDEX_RE.match(v))]
    return max(gens, default=0) + 1


def model_versions(store: ArtifactStore) -> list[str]:
    """Models that finished uploading (meta.json is written last)."""
    keys = store.list_keys("models/")
    return sorted({k.split("/")[1] for k in keys if k.endswith("/meta.json")}, key=_model_number)


def _model_number(v: str) -> int:
    m = _MODEL_RE.match(v)
    return int(m.group(1)) if m else -1


def _encode(m: Manifest) -> bytes:
    body = {
        "live": m.live.as_dict(),
        "previous": [p.as_dict() for p in m.previous],
        "updated_at": m.updated_at,
        "reason": m.reason,
        "documents": m.documents,
        "chunks": m.chunks,
    }
    return json.dumps(body, indent=2).encode()


def decode_manifest(data: bytes) -> Manifest:
    try:
        body = json.loads(data)
        return Manifest(
            live=VersionPair(**body["live"]),
            previous=tuple(VersionPair(**p) for p in body.get("previous", [])),
            updated_at=body.get("updated_at", ""),
            reason=body.get("reason", ""),
            documents=int(body.get("documents", 0)),
            chunks=int(body.get("chunks", 0)),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptArtifact(f"{MANIFEST_KEY}: {exc}") from exc


def read_manifest(store: ArtifactStore) -> tuple[Manifest, str] | None:
    """The manifest and its ETag, or None before the first ingest."""
    try:
        data, etag = store.get_with_etag(MANIFEST_KEY)
    except ArtifactNotFound:
        return None
    return decode_manifest(data), etag


def swap(
    store: ArtifactStore,
    new: VersionPair,
    *,
    expected_etag: str | None,
    reason: str,
    documents: int,
    chunks: int,
    keep: int = 3,
    clock: Callable[[], float] = time.time,
) -> Manifest:
    """Move the live pointer to `new` with one conditional write. The old live pair becomes previous[0], and
    `clock` dates the move. Raises ConflictError if the manifest changed since `expected_etag` was read (None:
    must not exist)."""
    current = read_manifest(store)
    current_etag = current[1] if current else None
    if current_etag != expected_etag:
        raise ConflictError(f"manifest moved (expected {expected_etag}, found {current_etag})")
    previous: tuple[VersionPair, ...] = ()
    if current:
        old = current[0]
        previous = tuple(p for p in (old.live, *old.previous) if p != new)[: max(keep - 1, 0)]
    manifest = Manifest(
        live=new,
        previous=previous,
        updated_at=datetime.fromtimestamp(clock(), UTC).isoformat(timespec="seconds"),
        reason=reason,
        documents=documents,
        chunks=chunks,
    )
    store.put_if(MANIFEST_KEY, _encode(manifest), expected_etag)
    return manifest


def rollback_target(manifest: Manifest) -> VersionPair:
    if not manifest.previous:
        raise ConflictError("no previous pair to roll back to")
    return manifest.previous[0]


def stats_key(index_ver: str) -> str:
    return f"corpus/{index_ver}/stats.json"


def write_stats(store: ArtifactStore, index_ver: str, stats: IndexStats) -> None:
    body = {"documents": stats.documents, "chunks": stats.chunks, "mode": stats.mode, "mode_reason": stats.mode_reason}
    store.put_bytes(stats_key(index_ver), json.dumps(body).encode(), "application/json")


def read_stats(store: ArtifactStore, index_ver: str) -> IndexStats:
    """Raises ArtifactNotFound, or CorruptArtifact. Stats written before hybrid retrieval have no mode: dense."""
    try:
        body = json.loads(store.get_bytes(stats_key(index_ver)))
        mode = body.get("mode", "dense")
        if mode not in get_args(RetrievalMode):
            raise ValueError(f"unknown retrieval mode {mode!r}")
        return IndexStats(int(body["documents"]), int(body["chunks"]), mode, str(body.get("mode_reason", "")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptArtifact(f"{stats_key(index_ver)}: {exc}") from exc


def stored_mode(store: ArtifactStore, index_ver: str) -> tuple[RetrievalMode, str]:
    """The retrieval mode the version's stats name, and why; dense when they are missing or unreadable."""
    try:
        stats = read_stats(store, index_ver)
    except (ArtifactNotFound, CorruptArtifact) as exc:
        return "dense", f"no readable stats for {index_ver}: {exc}"
    return stats.mode, stats.mode_reason


def rollback(store: ArtifactStore, keep: int = 3, clock: Callable[[], float] = time.time) -> Manifest:
    """Back to previous[0], with the same conditional write as every other move."""
    current = read_manifest(store)
    if current is None:
        raise NotReady("nothing is live yet")
    manifest, etag = current
    target = rollback_target(manifest)
    stats = read_stats(store, target.index_version)
    return swap(
        store,
        target,
        expected_etag=etag,
        reason="rollback",
        documents=stats.documents,
        chunks=stats.chunks,
        keep=keep,
        clock=clock,
    )
