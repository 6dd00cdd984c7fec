"""The serving Encoder: onnxruntime + a pure-Python WordPiece + numpy mean pooling. No torch, no transformers.

A model folder (what `training.export.export_int8` writes) holds `model.onnx`, `tokenizer.json` and
`meta.json`. The graph outputs token embeddings; pooling (attention-masked mean) and L2 normalisation
happen here, in numpy.

Batching and int8. A dynamically quantised graph picks one int8 scale per activation tensor, i.e. per
*batch*: the same text encoded beside different neighbours comes out different (cosine 0.96-0.99). So for
such a graph the encoder runs one sequence per call (batch_size 1): a text's vector is then a function of
the text alone, identical at query and index time. It costs nothing for chunk-sized inputs, where the
matrices are already large. fp32 graphs batch 32 at a time, longest first, padded to the batch maximum.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ..errors import CorruptArtifact
from ..ports import Vectors
from .wordpiece import WordPiece

BATCH_SIZE = 32  # fp32 graphs; quantised graphs run one sequence per call (see the module docstring)
_QUANTISED_OP = b"DynamicQuantizeLinear"
_TOKEN_OUTPUTS = ("last_hidden_state", "token_embeddings")


class OnnxEncoder:
    """Text → L2-normalised float32 vectors (n, dim) from an ONNX sentence-transformers model."""

    def __init__(
        self,
        model_dir: Path,
        version: str,
        threads: int = 1,
        max_seq_len: int = 256,
        *,
        batch_size: int | None = None,
        workers: int = 1,
    ) -> None:
        """batch_size None: 1 for a dynamically quantised graph, BATCH_SIZE otherwise. workers > 1 runs that
        many sequences at once (onnxruntime releases the GIL): bulk embedding on every core, while each
        vector still depends on its own text only."""
        model_dir = Path(model_dir)
        self._version = version
        self._tokenizer = _load_tokenizer(model_dir / "tokenizer.json", int(max_seq_len))
        model_file = model_dir / "model.onnx"
        model_bytes = _read_model(model_file)
        self._session = _load_session(model_file, model_bytes, threads)
        if batch_size is None:
            batch_size = 1 if _QUANTISED_OP in model_bytes else BATCH_SIZE
        self._batch_size = max(1, int(batch_size))
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="onnx") if workers > 1 else None
        del model_bytes

        declared = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - declared
        if missing:
            raise CorruptArtifact(f"{model_file}: model does not declare inputs {sorted(missing)}")
        self._token_types = "token_type_ids" in declared  # BERT graphs declare it, others may not

        outputs = self._session.get_outputs()
        chosen = next((o for o in outputs if o.name in _TOKEN_OUTPUTS), outputs[0] if outputs else None)
        if chosen is None:
            raise CorruptArtifact(f"{model_file}: model has no outputs")
        self._output = chosen.name
        self._dim = _read_dim(model_dir, chosen.shape)

    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):  # a bare string is a Sequence[str] too; never encode it char by char
            texts = [texts]
        n = len(texts)
        if n == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        if n == 1:  # the query hot path: no padding, no sorting, no pool
            return self._one(texts[0])[None, :]

        out = np.empty((n, self._dim), dtype=np.float32)
        if self._batch_size == 1:
            # Each worker tokenises its own text: tokenising overlaps inference instead of preceding it.
            vectors = self._pool.map(self._one, texts) if self._pool else map(self._one, texts)
            for i, vector in enumerate(vectors):
                out[i] = vector
            return out
        encodings = [self._tokenizer.encode(t) for t in texts]
        order = sorted(range(n), key=lambda i: len(encodings[i]), reverse=True)
        for start in range(0, n, self._batch_size):
            rows = order[start : start + self._batch_size]
            width = len(encodings[rows[0]])  # longest first: the first row sets the width
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                tok = encodings[i]
                ids[r, : len(tok)] = tok
                mask[r, : len(tok)] = 1
            out[rows] = self._run(ids, mask)
        return out

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def _one(self, text: str) -> npt.NDArray[np.float32]:
        ids = np.asarray(self._tokenizer.encode(text), dtype=np.int64)[None, :]
        return self._run(ids, np.ones_like(ids))[0]

    def _run(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Vectors:
        feed: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if self._token_types:
            feed["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run([self._output], feed)
        weights = mask[:, :, None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        pooled = summed / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.ascontiguousarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)


def _load_tokenizer(path: Path, max_seq_len: int) -> WordPiece:
    try:
        return WordPiece.from_file(path, max_seq_len)
    except Exception as exc:  # missing file, bad JSON, not a BERT WordPiece tokenizer
        raise CorruptArtifact(f"{path}: cannot load tokenizer: {exc}") from exc


def _read_model(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CorruptArtifact(f"{path}: cannot read ONNX model: {exc}") from exc


def _load_session(path: Path, model_bytes: bytes, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # missing file, truncated download, not an ONNX graph
        raise CorruptArtifact(f"{path}: cannot load ONNX model: {exc}") from exc


def _read_dim(model_dir: Path, shape: Sequence[Any]) -> int:
    if shape and isinstance(shape[-1], int) and shape[-1] > 0:
        return int(shape[-1])
    meta = model_dir / "meta.json"
    try:
        return int(json.loads(meta.read_text())["dim"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptArtifact(f"{model_dir}: output dim is dynamic and meta.json has no dim") from exc
