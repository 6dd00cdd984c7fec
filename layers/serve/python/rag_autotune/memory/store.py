"""Where a model's memory lives in the artifact store, and reading it back (through the ArtifactStore port:
the S3 calls stay in adapters/)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from ..errors import ArtifactNotFound, CorruptArtifact
from ..observability import logger
from ..ports import ArtifactStore
from ..versions import model_prefix
from .rules import DAY_S, MemoryParams, VoteMemory
from .snapshot import load_snapshot


def memory_key(model_version: str) -> str:
    """The memory snapshot shipped with a model (written by the tune's smoke step)."""
    return model_prefix(model_version) + "memory.npz"


def oldest_vote(now: float, max_age_days: float) -> float:
    """The time before which votes are no longer loaded (a memory rebuilt from the log, the smoke step's)."""
    return now - max_age_days * DAY_S


class MemorySnapshot(NamedTuple):
    """A version's shipped memory as read from the store, or None (no snapshot, or an unusable one), and the
    time from which the vote log must be replayed on top of it."""

    memory: VoteMemory | None
    as_of: float


def read_snapshot(
    store: ArtifactStore,
    version: str,
    defaults: MemoryParams,
    *,
    max_age_days: float = 90.0,
    clock: Callable[[], float] = time.time,
) -> MemorySnapshot:
    """models/<version>/memory.npz (its tuned threshold and weight kept), or, without a usable one, None and
    the start of the last max_age_days. Needs no encoder, so a cold start reads it while the encoder loads."""
    try:
        memory, meta = load_snapshot(store.get_bytes(memory_key(version)), defaults)
        return MemorySnapshot(memory, float(meta.get("as_of", 0.0)))  # open_live_memory checks version and dim
    except (ArtifactNotFound, CorruptArtifact) as exc:
        if isinstance(exc, CorruptArtifact):
            logger.error("feedback memory snapshot unusable; rebuilding from the vote log", extra={"error": str(exc)})
        return MemorySnapshot(None, oldest_vote(clock(), max_age_days))
