"""One set of assertions, every Encoder: the in-memory HashEncoder and the ONNX int8 encoder."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from rag_autotune.ports import Encoder
from tests.fakes import HashEncoder


def _hash() -> Encoder:
    return HashEncoder("v-hash")


def _onnx() -> Encoder:
    from rag_autotune.adapters.onnx_encoder import OnnxEncoder
    from tests.model_fixtures import exported_base_int8

    return OnnxEncoder(exported_base_int8(), "v-onnx", threads=1, max_seq_len=256)


FACTORIES: dict[str, Callable[[], Encoder]] = {"hash": _hash, "onnx": _onnx}

TEXTS = [
    "open and possibly create a file",
    "allocate and free dynamic memory",
    "fork creates a new process by duplicating the calling process",
    "x",
    "The mmap() function asks to map length bytes starting at offset offset from the file (or other "
    "object) specified by the file descriptor fd into memory, preferably at address start.",
]


@pytest.fixture(scope="session", params=sorted(FACTORIES))
def encoder(request: pytest.FixtureRequest) -> Encoder:
    return FACTORIES[request.param]()


def _norms(v: np.ndarray) -> np.ndarray:
    return np.linalg.norm(v, axis=1)


def test_shape_and_dtype(encoder: Encoder) -> None:
    v = encoder.encode(TEXTS)
    assert isinstance(encoder.dim, int) and encoder.dim > 0
    assert isinstance(encoder.version, str) and encoder.version
    assert v.shape == (len(TEXTS), encoder.dim)
    assert v.dtype == np.float32
    assert np.isfinite(v).all()


def test_empty_list(encoder: Encoder) -> None:
    v = encoder.encode([])
    assert v.shape == (0, encoder.dim)
    assert v.dtype == np.float32


def test_unit_norms(encoder: Encoder) -> None:
    np.testing.assert_allclose(_norms(encoder.encode(TEXTS)), 1.0, atol=1e-4)


def test_deterministic(encoder: Encoder) -> None:
    np.testing.assert_array_equal(encoder.encode(TEXTS), encoder.encode(list(TEXTS)))
    np.testing.assert_array_equal(encoder.encode(TEXTS[:1]), encoder.encode(TEXTS[:1]))


def test_batch_equals_single(encoder: Encoder) -> None:
    """A text's vector must not depend on what else is in the call (nor on internal batching/sorting)."""
    many = TEXTS * 15  # > one internal batch, mixed lengths
    batched = encoder.encode(many)
    single = np.concatenate([encoder.encode([t]) for t in TEXTS])
    for start in range(0, len(many), len(TEXTS)):
        np.testing.assert_allclose(batched[start : start + len(TEXTS)], single, atol=1e-4)


def test_order_preserved(encoder: Encoder) -> None:
    forward = encoder.encode(TEXTS)
    backward = encoder.encode(TEXTS[::-1])
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-4)


def test_empty_string(encoder: Encoder) -> None:
    v = encoder.encode(["", "open a file"])
    assert v.shape == (2, encoder.dim)
    assert np.isfinite(v).all()
    # The hashing fake has no tokens for "" and returns a zero vector; a real model embeds [CLS][SEP].
    assert _norms(v)[0] <= 1.0 + 1e-4
    np.testing.assert_allclose(_norms(v)[1], 1.0, atol=1e-4)


def test_long_text_is_truncated(encoder: Encoder) -> None:
    long = ("The open() system call opens the file specified by pathname. " * 200)[:10_000]
    assert len(long) == 10_000
    v = encoder.encode([long, "short"])
    assert v.shape == (2, encoder.dim)
    np.testing.assert_allclose(_norms(v), 1.0, atol=1e-4)


def test_related_texts_score_higher(encoder: Encoder) -> None:
    query, related, unrelated = encoder.encode(
        ["open a file", "open and possibly create a file", "the weather in paris"]
    )
    assert float(query @ related) > float(query @ unrelated) + 0.2
