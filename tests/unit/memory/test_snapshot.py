"""The formats (memory/vectors.py, memory/snapshot.py): logged vectors and the shipped .npz."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from rag_autotune.errors import CorruptArtifact
from rag_autotune.memory import VoteMemory, dump_snapshot, load_snapshot, pack_vector, unpack_vector
from tests.unit.memory.support import DOCS, T0, P, mv, vec


def test_pack_vector_round_trip_is_close() -> None:
    v = vec("how do I create a pipe")
    back = unpack_vector(pack_vector(v))
    assert back.dtype == np.float32 and len(pack_vector(v)) == 2 * v.shape[0]
    assert float(back @ v) > 0.999


def test_snapshot_round_trip_keeps_tuned_values_and_takes_safety_from_settings() -> None:
    tuned = replace(P, threshold=0.98, weight=0.5, enabled=False)
    mem = VoteMemory("v3", 64, tuned, epoch=T0)
    for i, q in enumerate(["create a pipe", "open a file", "allocate memory"]):
        mem.add(mv(q, DOCS[i][0], voter=f"u{i}", t=T0 + i), vec(q, "v3"))
        mem.add(mv(q, DOCS[i + 1][0], voter=f"u{i}", up=False, t=T0 + i), None)
    data = dump_snapshot(mem, as_of=T0 + 5, extra={"run_id": "r1"})
    back, meta = load_snapshot(data, replace(P, max_penalty=0.1))
    assert meta["as_of"] == T0 + 5 and meta["run_id"] == "r1" and meta["model_version"] == "v3"
    assert (back.params.threshold, back.params.weight, back.params.enabled) == (0.98, 0.5, False)
    assert back.params.max_penalty == 0.1
    assert len(back) == len(mem) == 6 and back.queries == 3
    back.params = replace(back.params, enabled=True, max_penalty=P.max_penalty)
    mem.params = replace(mem.params, enabled=True)
    for q in ("create a pipe", "open a file"):
        a, b = mem.boosts(vec(q, "v3"), T0 + 5), back.boosts(vec(q, "v3"), T0 + 5)
        assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 2e-3 for k in a)


def test_snapshot_rows_load_in_bulk_and_match_added_rows() -> None:
    rng = np.random.default_rng(3)
    mem, vectors = VoteMemory("v0", 64, P, epoch=T0), rng.standard_normal((50, 64)).astype(np.float32)
    for i, v in enumerate(vectors):
        mem.add(mv(f"query {i % 40}", f"doc{i % 7}", voter=f"u{i}", up=bool(i % 3), t=T0 + i), v)
    back, _ = load_snapshot(dump_snapshot(mem, as_of=T0 + 60))
    assert back.queries == mem.queries == 40 and len(back) == len(mem)
    for q in vectors[:5]:  # each is a remembered query: its own votes boost
        a, b = mem.boosts(q, T0 + 60), back.boosts(q, T0 + 60)
        assert a and a.keys() == b.keys() and all(abs(a[k] - b[k]) < 2e-3 for k in a)


def _resaved(data: bytes, **changes: Any) -> bytes:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files} | changes
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _damaged(data: bytes, what: str) -> bytes:
    if what == "truncated":
        return data[: len(data) // 2]
    changes: dict[str, Any] = {
        "a vote on a missing query": {"row": np.array([0, 2], dtype=np.int32)},
        "the same query twice": {"texts": np.array(["create a pipe", "Create  a pipe"])},
        "vectors of another dim": {"vectors": np.zeros((2, 32), dtype=np.float16)},
    }[what]
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files} | changes
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize(
    "what", ["truncated", "a vote on a missing query", "the same query twice", "vectors of another dim"]
)
def test_a_snapshot_that_is_not_whole_is_corrupt(what: str) -> None:
    mem = VoteMemory("v0", 64, P, epoch=T0)
    for q in ("create a pipe", "open a file"):
        mem.add(mv(q, "pipe.2"), vec(q))
    data = dump_snapshot(mem, as_of=T0)
    assert load_snapshot(data)[0].queries == 2  # whole, it loads
    with pytest.raises(CorruptArtifact):
        load_snapshot(_damaged(data, what))
