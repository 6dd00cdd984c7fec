"""Finding the remembered queries near a question: a SimHash prefilter, then exact cosines.

A full scan of 10k × 384 float32 (15 MB) is bound by memory bandwidth once the encoder and the index have
evicted it from cache. Each row also keeps a 256-bit SimHash (signs of 256 fixed random Gaussian projections,
32 bytes a row), and only rows whose Hamming distance to the query's could belong to a cosine ≥ threshold are
scored exactly. For random hyperplanes each bit differs with probability angle/π independently, so the cut-off
(expected count + 6σ at the threshold angle) misses a row that is truly near with probability below 1e-9;
thresholds too low to prune scan everything.

numpy only (no numpy.random: the serve layer does not carry it).
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

from ..ports import Vectors

BITS = 256
WORDS = BITS // 64  # uint64 words per hash
SIGMAS = 6.0

Hashes = npt.NDArray[np.uint64]
Rows = npt.NDArray[np.intp]

_PLANES: dict[int, Vectors] = {}  # dim → projections, fixed (seeded): every process hashes alike


def _planes(dim: int) -> Vectors:
    """(dim, BITS) standard normal projections from a fixed seed. Box-Muller over SHAKE-256 output rather than
    numpy.random, which the serve layer does not carry (scripts/build_layer.py prunes it)."""
    if dim not in _PLANES:
        n = dim * BITS  # even: normals come in pairs
        raw = np.frombuffer(hashlib.shake_256(b"rag-autotune simhash planes").digest(8 * n), dtype="<u8")
        u = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53  # uniform in (0, 1)
        r, theta = np.sqrt(-2.0 * np.log(u[: n // 2])), 2.0 * np.pi * u[n // 2 :]
        _PLANES[dim] = np.concatenate([r * np.cos(theta), r * np.sin(theta)]).reshape(dim, BITS).astype(np.float32)
    return _PLANES[dim]


def simhash(unit_rows: Vectors) -> Hashes:
    """(n, dim) → (n, WORDS) uint64 sign bits of the fixed projections."""
    return np.packbits(unit_rows @ _planes(unit_rows.shape[1]) > 0, axis=1).view(np.uint64)


def hamming_cutoff(threshold: float, bits: int = BITS, sigmas: float = SIGMAS) -> float:
    """Largest Hamming distance a row with cosine ≥ threshold plausibly has; ≥ bits/2 means no pruning."""
    p = float(np.arccos(np.clip(threshold, -1.0, 1.0))) / np.pi
    return bits * p + sigmas * float(np.sqrt(bits * p * (1.0 - p)))


def near_rows(matrix: Vectors, hashes: Hashes, n: int, v: Vectors, threshold: float) -> tuple[Rows, Vectors]:
    """Of the first n unit rows of `matrix` (their hashes as (WORDS, rows) columns), those with cosine ≥
    threshold to v, and their cosines (exact)."""
    cutoff = hamming_cutoff(threshold)
    if cutoff >= BITS / 2:  # too loose to prune: score every row
        sims = _similarities(matrix, n, v)
        near = np.flatnonzero(sims >= threshold)
        return near, sims[near]
    norm = float(np.linalg.norm(v)) or 1.0
    qhash = simhash((v / np.float32(norm)).reshape(1, -1)).T  # (words, 1)
    distance = np.bitwise_count(hashes[:, :n] ^ qhash).sum(axis=0, dtype=np.uint16)
    candidates = np.flatnonzero(distance <= cutoff)
    sims = matrix[candidates] @ v
    keep = sims >= threshold
    return candidates[keep], sims[keep]


# Rows per matrix-vector product: one product over a large matrix makes OpenBLAS wake its threads, which on a
# busy machine costs more than it saves; blocks of this size stay on one thread (`make bench-query` times /ask
# with a large memory).
_BLOCK = 1024


def _similarities(matrix: Vectors, n: int, v: Vectors) -> Vectors:
    sims = np.empty(n, dtype=np.float32)
    for i in range(0, n, _BLOCK):
        j = min(i + _BLOCK, n)
        np.dot(matrix[i:j], v, out=sims[i:j])
    return sims
