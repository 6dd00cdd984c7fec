"""A query vector as logged with the query and copied into its votes: float16, so 768 bytes for 384 dims
(cosine error below 1e-3), stored as a DynamoDB Binary. The memory reads it back instead of re-encoding."""

from __future__ import annotations

import numpy as np

from ..ports import Vectors


def pack_vector(vector: Vectors) -> bytes:
    return np.asarray(vector, dtype=np.float32).reshape(-1).astype(np.float16).tobytes()


def unpack_vector(data: bytes) -> Vectors:
    return np.frombuffer(data, dtype=np.float16).astype(np.float32)
