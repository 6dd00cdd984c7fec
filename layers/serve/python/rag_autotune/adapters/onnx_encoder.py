"""The serving Encoder: onnxruntime + tokenizers + numpy mean pooling. No torch, no transformers.

A model folder (what `training.export.export_int8` writes) holds `model.onnx`, `tokenizer.json` and
`meta.json`. The graph outputs token embeddings; pooling (attention-masked mean) and L2 normalisation
happen here, in numpy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from ..errors import CorruptArtifact
from ..ports import Vectors

BATCH_SIZE = 32
_TOKEN_OUTPUTS = ("last_hidden_state", "token_embeddings")
_FEEDS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxEncoder:
    """Text → L2-normalised float32 vectors (n, dim) from an ONNX sentence-transformers model."""

    def __init__(self, model_dir: Path, version: str, threads: int = 1, max_seq_len: int = 256) -> None:
        model_dir = Path(model_dir)
        self._version = version
        self._max_seq_len = int(max_seq_len)
        self._tokenizer = _load_tokenizer(model_dir / "tokenizer.json", self._max_seq_len)
        self._session = _load_session(model_dir / "model.onnx", threads)

        declared = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - declared
        if missing:
            raise CorruptArtifact(f"{model_dir / 'model.onnx'}: model does not declare inputs {sorted(missing)}")
        self._feeds = tuple(name for name in _FEEDS if name in declared)

        outputs = self._session.get_outputs()
        chosen = next((o for o in outputs if o.name in _TOKEN_OUTPUTS), outputs[0] if outputs else None)
        if chosen is None:
            raise CorruptArtifact(f"{model_dir / 'model.onnx'}: model has no outputs")
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
        if n == 1:  # the query hot path: no padding, no sorting
            ids = np.asarray(self._tokenizer.encode(texts[0]).ids, dtype=np.int64)[None, :]
            return self._run(ids, np.ones_like(ids))

        encodings: list[Encoding] = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(n), key=lambda i: len(encodings[i].ids), reverse=True)
        out = np.empty((n, self._dim), dtype=np.float32)
        for start in range(0, n, BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            width = len(encodings[rows[0]].ids)  # longest first: the first row sets the width
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                tok = encodings[i].ids
                ids[r, : len(tok)] = tok
                mask[r, : len(tok)] = 1
            out[rows] = self._run(ids, mask)
        return out

    def _run(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Vectors:
        available = {"input_ids": ids, "attention_mask": mask}
        feed: dict[str, Any] = {name: available.get(name) for name in self._feeds}
        if "token_type_ids" in feed:
            feed["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run([self._output], feed)
        weights = mask[:, :, None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        pooled = summed / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.ascontiguousarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)


def _load_tokenizer(path: Path, max_seq_len: int) -> Tokenizer:
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # missing file, bad JSON, unknown model type
        raise CorruptArtifact(f"{path}: cannot load tokenizer: {exc}") from exc
    # Whatever the file says, this class decides: truncate at max_seq_len, pad per batch (done by hand).
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_seq_len)
    return tokenizer


def _load_session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
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
