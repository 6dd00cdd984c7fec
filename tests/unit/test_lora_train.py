"""LoRA train → merge → int8 export keeps parity, and the Train step uploads a complete model version.

Tiny runs (16 short triplets, rank 4, a few steps): they check the plumbing (adapter, merge, export,
parity, uploads), not the recipe; `make bench-loop` measures the recipe."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_autotune.domain import VersionPair
from rag_autotune.settings import Settings
from rag_autotune.training.export import PROBE_CORPUS, PROBE_SENTENCES, parity, torch_encoder
from rag_autotune.training.lora import TrainConfig
from rag_autotune.tune.state import RunCounts, RunState
from tests.fakes import MemoryArtifactStore

pytestmark = pytest.mark.slow

TINY = TrainConfig(
    rank=4,
    alpha=16,
    dropout=0.0,
    lr=5e-3,
    epochs=2,
    batch_size=8,
    mini_batch_size=4,  # GradCache path, as the default config uses
    max_seq_len=48,
    warmup_ratio=0.0,
    logging_steps=1,
    threads=1,  # tiny batches: a second thread only spins, taking the shared cores' time
)


def _rows(n: int = 16) -> list[tuple[str, str, str]]:
    return [(PROBE_SENTENCES[i], PROBE_CORPUS[i], PROBE_CORPUS[(i + 7) % len(PROBE_CORPUS)]) for i in range(n)]


def test_train_merge_export_keeps_parity_and_changes_the_model() -> None:
    from rag_autotune.adapters.onnx_encoder import OnnxEncoder
    from rag_autotune.training.export import base_model_path, export_int8
    from rag_autotune.training.lora import has_adapter, load_model, merge_adapter, train_lora

    texts = list(PROBE_SENTENCES) + list(PROBE_CORPUS)
    model = load_model(base_model_path())
    base = torch_encoder(model)(texts)
    progress: list[tuple[int, int]] = []
    result = train_lora(model, _rows(), TINY, progress=lambda done, total: progress.append((done, total)))
    assert result.examples == 16 and result.steps == 4
    assert progress == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]  # optimizer steps, from the start
    assert [s for s, _ in result.loss_curve] == [1, 2, 3, 4]
    assert has_adapter(model)
    assert model.max_seq_length == 256  # training's length was temporary
    dropouts = {m.dropout_prob for m in model[0].auto_model.modules() if hasattr(m, "dropout_prob")}
    assert dropouts == {0.1}  # attention dropout was switched off for training only
    adapter = torch_encoder(model)(texts)
    assert float((base * adapter).sum(axis=1).mean()) < 0.995  # training moved the embeddings

    merge_adapter(model)
    assert not has_adapter(model)
    assert type(model[0].auto_model).__name__ == "BertModel"
    assert not getattr(model[0].auto_model, "_hf_peft_config_loaded", False)
    merged = torch_encoder(model)(texts)
    assert float((adapter * merged).sum(axis=1).min()) > 0.9999  # the merge itself is exact
    assert float((base * merged).sum(axis=1).mean()) < 0.995  # ... and kept what training changed

    with tempfile.TemporaryDirectory() as tmp:
        model.save(str(Path(tmp) / "st"))
        saved = sorted(p.name for p in (Path(tmp) / "st").iterdir())
        assert "model.safetensors" in saved and "adapter_config.json" not in saved
        folder = export_int8(Path(tmp) / "st", Path(tmp) / "int8")
        report = parity(lambda _t: adapter, OnnxEncoder(folder, "v1"), list(PROBE_SENTENCES))
    print(f"adapter torch vs merged int8: {report}")
    assert report.mean_cosine >= 0.98
    assert report.top5_overlap >= 0.6


def CLOCK() -> float:
    return 1000.0


def _state() -> RunState:
    return RunState(
        run_id="r1",
        prefix="runs/r1/",
        status="RUNNING",
        live=VersionPair("v0", "v0-c1"),
        live_etag='"e0"',
        candidate=VersionPair("v1", "v1-c1"),
        counts=RunCounts(votes=32, new_votes=32, triplets=16, hard_negatives=16),
    )


def _store(n: int = 16) -> MemoryArtifactStore:
    store = MemoryArtifactStore()
    lines = [json.dumps({"query": q, "positive": p, "negative": neg}) for q, p, neg in _rows(n)]
    store.put_bytes("runs/r1/train.jsonl", ("\n".join(lines) + "\n").encode())
    return store


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", **extra)


def test_train_step_uploads_a_complete_model_version(tmp_path: Path) -> None:
    from rag_autotune.adapters.onnx_encoder import OnnxEncoder
    from rag_autotune.training.lora import load_model
    from rag_autotune.tune import train_step
    from rag_autotune.versions import model_versions

    store = _store()
    out = train_step.train(_state(), store=store, settings=_settings(tmp_path), config=TINY, now=CLOCK, budget_s=600.0)

    keys = store.list_keys("models/v1/")
    assert keys == [
        f"models/v1/{n}" for n in ("meta.json", "model.onnx", "tokenizer.json", "torch.tar", "training.json")
    ]
    assert model_versions(store) == ["v1"]
    training = json.loads(store.get_bytes("models/v1/training.json"))
    assert training["counts"]["triplets"] == 16 and training["counts"]["hard_negatives"] == 16
    assert training["config"]["rank"] == 4 and len(training["loss_curve"]) == 4
    assert training["parity"]["mean_cosine"] >= 0.98 and training["parity"]["threshold"] == 0.98
    meta = json.loads(store.get_bytes("models/v1/meta.json"))
    assert meta["dim"] == 384 and meta["version"] == "v1" and meta["parent"] == "v0"
    assert out.training and out.training["version"] == "v1" and out.training["triplets"] == 16
    assert out.evolve(training=None) == _state()  # the rest of the state passes through
    run = json.loads(store.get_bytes("runs/r1/run.json"))
    assert "train" in run["steps"] and run["training"]["parity_mean_cosine"] >= 0.98
    assert run["step"] == "train" and "step_started_at" in run
    progress = json.loads(store.get_bytes("runs/r1/progress.json"))
    assert (progress["step"], progress["done"], progress["total"], progress["unit"]) == ("train", 4, 4, "step")

    # The next run starts from v1's torch weights: torch.tar is the merged folder, and it matches the ONNX.
    folder = train_step.live_torch_model(store, "v1", tmp_path / "cache")
    assert (folder / "model.safetensors").is_file() and not (folder / "adapter_config.json").exists()
    with tarfile.open(fileobj=io.BytesIO(store.get_bytes("models/v1/torch.tar"))) as tar:
        assert all(not n.startswith(("/", "..")) for n in tar.getnames())
    onnx_dir = tmp_path / "v1"
    for name in ("model.onnx", "tokenizer.json", "meta.json"):
        store.download_file(f"models/v1/{name}", onnx_dir / name)
    report = parity(torch_encoder(load_model(folder)), OnnxEncoder(onnx_dir, "v1"), list(PROBE_SENTENCES))
    assert report.mean_cosine >= 0.98


def test_parity_failure_is_named_and_leaves_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag_autotune.tune import train_step

    monkeypatch.setattr(train_step, "PARITY_MIN", 1.01)
    settings = _settings(tmp_path)
    store = _store()
    tiny = TrainConfig(**{**TINY.as_dict(), "epochs": 1, "target_modules": TINY.target_modules})
    with pytest.raises(train_step.ParityError, match="mean cosine"):
        train_step.train(_state(), store=store, settings=settings, config=tiny, now=CLOCK, budget_s=600.0)
    assert store.list_keys("models/") == []
    run = json.loads(store.get_bytes("runs/r1/run.json"))
    assert run["parity"]["threshold"] == 1.01
    assert np.isfinite(run["parity"]["mean_cosine"])


class TickClock:
    """Each reading is one second after the last: the train step's clock readings stand in for its work."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def test_a_run_over_its_budget_trains_on_the_triplets_that_fit_and_says_how_many_are_left(tmp_path: Path) -> None:
    from rag_autotune.tune import train_step

    store = _store(24)  # 24 distinct queries, 2 epochs of 8: 6 planned steps
    tiny = TrainConfig(**{**TINY.as_dict(), "target_modules": TINY.target_modules})
    out = train_step.train(
        _state(), store=store, settings=_settings(tmp_path), config=tiny, now=TickClock(), budget_s=14
    )

    training = json.loads(store.get_bytes("models/v1/training.json"))
    counts, budget = training["counts"], training["budget"]
    print(counts, budget)
    assert budget["first_run_steps"] == 3 and budget["planned_steps"] == 6  # stopped once the pace was measured
    assert budget["seconds_per_step"] > 0 and budget["steps_that_fit"] >= 1
    assert 0 < counts["triplets_used"] < 24 and counts["triplets_used"] + counts["triplets_left"] == 24
    assert counts["queries_used"] == counts["triplets_used"]  # one triplet per query: the newest queries
    run = json.loads(store.get_bytes("runs/r1/run.json"))
    assert run["training"]["triplets_used"] == counts["triplets_used"]
    assert run["training"]["triplets_left"] == counts["triplets_left"]
    assert out.training and out.training["triplets_left"] == counts["triplets_left"]
    assert store.list_keys("models/v1/meta.json") == ["models/v1/meta.json"]  # the run ended on its merits


def test_a_budget_too_small_for_one_step_fails_at_once_with_its_reason(tmp_path: Path) -> None:
    from rag_autotune.tune import train_step
    from rag_autotune.tune.budget import TrainBudgetTooSmall

    store = _store()
    with pytest.raises(TrainBudgetTooSmall, match=r"fits none of the 4 planned.*RAG_TUNE_TRAIN_BUDGET_S"):
        train_step.train(_state(), store=store, settings=_settings(tmp_path), config=TINY, now=TickClock(), budget_s=7)
    assert store.list_keys("models/") == []
    run = json.loads(store.get_bytes("runs/r1/run.json"))
    assert run["budget"]["steps_that_fit"] == 0 and run["budget"]["first_run_steps"] == 1


def test_a_single_step_run_with_the_default_warm_up_still_changes_the_model() -> None:
    """The time budget may re-plan a run down to one step: its learning rate must not be the warm-up's 0."""
    from dataclasses import replace

    from rag_autotune.training.export import base_model_path
    from rag_autotune.training.lora import load_model, train_lora

    texts = list(PROBE_SENTENCES[:4])
    model = load_model(base_model_path())
    base = torch_encoder(model)(texts)
    config = replace(TINY, warmup_ratio=TrainConfig().warmup_ratio, epochs=1)
    result = train_lora(model, _rows(8), config)
    assert result.steps == 1
    assert float(np.abs(torch_encoder(model)(texts) - base).max()) > 1e-4


def test_the_grid_scores_each_point_on_the_fold_and_trains_the_candidate_with_the_best(tmp_path: Path) -> None:
    from rag_autotune.tune import train_step

    store = _store(40)  # 31 triplets trained on, 9 queries scored (tune/grid.py's fold)
    settings = _settings(tmp_path, tune_train_grid=[(1e-3, 1)])
    out = train_step.train(_state(), store=store, settings=settings, config=TINY, now=CLOCK, budget_s=600.0)

    report = json.loads(store.get_bytes("models/v1/training.json"))["grid"]
    print(report)
    assert report["fold_queries"] == 9 and "skipped" not in report
    assert [(p["lr"], p["epochs"]) for p in report["points"]] == [(5e-3, 2), (1e-3, 1)]  # the default first
    assert all(0.0 < p["fold_ndcg@10"] <= 1.0 for p in report["points"]) and 0.0 < report["live"] <= 1.0
    best = max(report["points"], key=lambda p: p["fold_ndcg@10"])
    assert report["chosen"] == {"lr": best["lr"], "epochs": best["epochs"]}
    assert out.training and (out.training["lr"], out.training["epochs"]) == (best["lr"], best["epochs"])


def test_the_grid_stops_at_the_point_that_would_not_fit_and_the_candidate_still_trains(tmp_path: Path) -> None:
    from rag_autotune.tune import train_step

    store = _store(40)
    settings = _settings(tmp_path, tune_train_grid=[(1e-3, 1), (2e-3, 1)])
    out = train_step.train(_state(), store=store, settings=settings, config=TINY, now=TickClock(), budget_s=25)

    report = json.loads(store.get_bytes("models/v1/training.json"))["grid"]
    print(report)
    assert len(report["points"]) == 1 and "would not fit the budget" in report["skipped"]
    assert report["chosen"] == {"lr": 5e-3, "epochs": 2}  # only the default was scored
    assert out.training and out.training["steps"] >= 1
