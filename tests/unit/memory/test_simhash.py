"""The SimHash prefilter (memory/simhash.py): the same near rows as a full scan."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from rag_autotune.memory import VoteMemory, hamming_cutoff
from tests.unit.memory.support import T0, P, mv


def _at_cosine(q: Any, c: float, rng: np.random.Generator) -> Any:
    """A unit vector with cosine exactly c to the unit vector q."""
    r = rng.standard_normal(q.shape[0]).astype(np.float32)
    r -= (r @ q) * q
    return c * q + np.sqrt(1 - c * c) * r / np.linalg.norm(r)


@pytest.mark.parametrize("threshold", [0.95, 0.9, 0.8, 0.3])
def test_prefilter_finds_exactly_the_rows_a_full_scan_finds(threshold: float) -> None:
    rng = np.random.default_rng(7)
    dim, mem = 384, VoteMemory("v0", 384, replace(P, threshold=threshold))
    queries = [v / np.linalg.norm(v) for v in rng.standard_normal((20, dim)).astype(np.float32)]
    rows = []
    for q in queries:  # per query: rows just above and just below the threshold, and unrelated ones
        rows += [_at_cosine(q, min(threshold + d, 1.0), rng) for d in (0.0005, 0.002, 0.01, 0.03, -0.002, -0.03)]
        rows += list(rng.standard_normal((40, dim)).astype(np.float32))
    for i, v in enumerate(rows):
        mem.add(mv(f"q{i}", f"doc{i}", t=T0), v)
    matrix = np.stack([v / np.linalg.norm(v) for v in rows])
    pruned = 0
    for q in queries:
        near, sims = mem.near(q)
        exact = np.flatnonzero(matrix @ q >= threshold)
        assert near.tolist() == exact.tolist() and np.allclose(sims, matrix[exact] @ q, atol=1e-5)
        pruned += hamming_cutoff(threshold) < 128
    assert pruned == (20 if threshold >= 0.8 else 0)  # loose thresholds scan every row
