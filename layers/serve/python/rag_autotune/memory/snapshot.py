"""The snapshot format: a memory as one .npz (no pickles), as a tune run ships it beside a model.

It stores the votes that count, each on its row, and the query vectors (float16). Loading replays the votes
through `VoteMemory.replay`, so the rules hold for a snapshot exactly as for a live refresh.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from ..errors import CorruptArtifact
from .rules import CountedVote, MemoryParams, VoteMemory


def dump_snapshot(memory: VoteMemory, as_of: float, extra: Mapping[str, Any] | None = None) -> bytes:
    """`memory` as .npz bytes; `as_of` is the time from which the vote log must be replayed on top of it, and
    `extra` goes into the meta as it is."""
    votes = memory.counted()
    meta = {
        "model_version": memory.model_version,
        "dim": memory.dim,
        "epoch": memory.epoch,
        "as_of": as_of,
        "params": asdict(memory.params),
        "votes": len(votes),
        "queries": memory.queries,
        **(extra or {}),
    }
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        meta=np.array(json.dumps(meta)),
        texts=np.array(memory.texts, dtype=str),
        vectors=memory.vectors.astype(np.float16),
        voter=np.array([v.voter for v in votes], dtype=str),
        row=np.array([v.row for v in votes], dtype=np.int32),
        doc=np.array([v.doc for v in votes], dtype=str),
        up=np.array([v.up for v in votes], dtype=bool),
        at=np.array([v.at for v in votes], dtype=np.float64),
    )
    return buf.getvalue()


def load_snapshot(data: bytes, params: MemoryParams | None = None) -> tuple[VoteMemory, dict[str, Any]]:
    """A snapshot back, and its meta. `params` replaces the snapshot's safety settings but keeps its tuned
    threshold, weight and enabled flag. Raises CorruptArtifact for anything that is not a whole snapshot."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            texts = [str(t) for t in z["texts"]]
            vectors = z["vectors"].astype(np.float32)
            voters, rows, docs = z["voter"].tolist(), z["row"].tolist(), z["doc"].tolist()
            ups, ats = z["up"].tolist(), z["at"]
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:  # a cut file is not a zip
        raise CorruptArtifact(f"feedback memory snapshot: {exc}") from exc
    stored = MemoryParams(**meta.get("params", {}))
    tuned = replace(params or stored, threshold=stored.threshold, weight=stored.weight, enabled=stored.enabled)
    memory = VoteMemory(str(meta["model_version"]), int(meta["dim"]), tuned, meta.get("epoch"))
    try:
        memory.add_queries(texts, vectors)  # all rows at once; the votes replay through the rules
    except ValueError as exc:
        raise CorruptArtifact(f"feedback memory snapshot: {exc}") from exc
    if any(not 0 <= r < len(texts) for r in rows):
        raise CorruptArtifact("feedback memory snapshot: a vote on a missing query")
    at_of = ats.tolist()
    for i in np.argsort(ats, kind="stable").tolist():
        memory.replay(CountedVote(voters[i], rows[i], docs[i], ups[i], at_of[i]))
    return memory, meta
