"""The snapshot format: a memory as one .npz (no pickles), as a tune run ships it beside a model.

It stores the votes that count, each on its row, and the query vectors (float16). Loading replays the votes
through `VoteMemory.replay`, so the rules hold for a snapshot exactly as for a live refresh. It also stores the
vote steering's fitted params (meta "steering") and the voted documents' chunks and vectors (float16), which
steering feeds to the engine; a snapshot written before steering existed has none, and loads with it off.
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
from ..steering import SteerParams
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
        "steering": asdict(memory.steering),
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
        chunk_doc=np.array(list(memory.doc_chunks), dtype=str),
        chunk_id=np.array(list(memory.doc_chunks.values()), dtype=str),
        vector_doc=np.array(list(memory.doc_vectors), dtype=str),
        doc_vectors=np.array(list(memory.doc_vectors.values()), dtype=np.float16).reshape(-1, memory.dim),
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
            files = set(z.files)
            chunks = (
                dict(zip(z["chunk_doc"].tolist(), z["chunk_id"].tolist(), strict=True)) if "chunk_id" in files else {}
            )
            doc_vectors = (
                dict(zip(z["vector_doc"].tolist(), z["doc_vectors"].astype(np.float32), strict=True))
                if "doc_vectors" in files
                else {}
            )
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:  # a cut file is not a zip
        raise CorruptArtifact(f"feedback memory snapshot: {exc}") from exc
    stored = MemoryParams(**meta.get("params", {}))
    tuned = replace(params or stored, threshold=stored.threshold, weight=stored.weight, enabled=stored.enabled)
    try:
        steering = SteerParams.from_dict(meta.get("steering"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptArtifact(f"feedback memory snapshot: steering {exc}") from exc
    memory = VoteMemory(str(meta["model_version"]), int(meta["dim"]), tuned, meta.get("epoch"), steering)
    memory.doc_chunks.update(chunks)
    memory.doc_vectors.update(doc_vectors)
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
