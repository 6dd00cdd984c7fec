"""LoRA fine-tuning of the live sentence-transformers encoder on (query, 👍 chunk, 👎 chunk) triplets.

    model = load_model(folder)                 # torch, cpu
    result = train_lora(model, rows, config)   # adds a LoRA adapter in place and trains it (MNRL)
    merged = merge_adapter(model)              # the same model, adapter folded into plain nn.Linear weights

The adapter is added through sentence-transformers' PEFT support (`model.add_adapter(LoraConfig)`), which
injects peft `LoraLayer`s into the BertModel in place (no `PeftModel` wrapper). Such a model cannot simply
be saved for export: transformers' `save_pretrained` writes only the adapter while `_hf_peft_config_loaded`
is set, so the exported graph would not be the tuned model (a known trap: sentence-transformers#3246).
`merge_adapter` therefore folds every LoRA layer into its base Linear, puts the base Linear back in its
parent and clears the PEFT flags, so the saved folder is an ordinary BertModel holding the tuned weights.
Always check parity after merging (train_step does, against the adapter model's own embeddings).

torch, peft, datasets and sentence-transformers are imported inside the functions: importing this module
for TrainConfig stays cheap.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Triplet = tuple[str, str, str]  # (query, positive chunk text, hard-negative chunk text)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one nightly LoRA run. Chosen by a sweep on man pages with simulated votes: one epoch
    at the serving length with a high LoRA learning rate beat longer and shorter runs, and the plain recipe
    (lr 2e-4, 128 tokens) on held-out and repeated queries alike. The README's "How the training recipe was
    chosen" has the figures."""

    rank: int = 16
    alpha: int = 32  # LoRA scale alpha/rank = 2
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("query", "key", "value", "dense")  # "dense": every other Linear
    lr: float = 1e-3
    epochs: int = 1
    batch_size: int = 32  # 16 was worse: fewer in-batch negatives
    max_seq_len: int = 256  # = serving; 128 trains faster but gains less on unseen queries
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    # Memory. Plain MNRL at batch 32 × 3 columns × 256 tokens does not fit the train function's 10 GB.
    # Attention dropout off lets torch's fused CPU attention run (less memory, and faster); GradCache
    # (CachedMultipleNegativesRankingLoss, same loss, same in-batch negatives) in mini-batches of 8 keeps the
    # peak a fraction of that, whatever the batch size.
    mini_batch_size: int = 8  # 0: plain MultipleNegativesRankingLoss
    attention_dropout: float = 0.0  # during training only; the saved config keeps its own value
    seed: int = 0
    threads: int = 2
    logging_steps: int = 1

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> TrainConfig:
        """The tuned defaults with some fields replaced (RAG_TUNE_TRAIN_OVERRIDES, a JSON object)."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown training setting(s): {sorted(unknown)}")
        values: dict[str, Any] = {k: tuple(v) if k == "target_modules" else v for k, v in overrides.items()}
        return cls(**values)


@dataclass
class TrainResult:
    loss_curve: list[list[float]] = field(default_factory=list)  # [[step, loss], ...]
    seconds: float = 0.0
    steps: int = 0
    examples: int = 0  # triplets trained on (per epoch)
    planned_steps: int = 0
    stopped: bool = False  # `stop` ended the run before its planned steps

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_model(model_dir: Path | str) -> Any:
    """A sentence-transformers folder → SentenceTransformer on cpu (offline: local files only)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)


def train_lora(
    model: Any,
    rows: Sequence[Triplet],
    config: TrainConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[int, int], bool] | None = None,
) -> TrainResult:
    """Add a LoRA adapter to `model` (in place) and train it with MultipleNegativesRankingLoss over
    (anchor, positive, negative) columns: each query against its 👍 chunk, its 👎 chunk and every other
    chunk in the batch. NO_DUPLICATES keeps a text from appearing twice in one batch (a query with several
    👎 yields several rows; in one batch its positive would otherwise be a false negative of itself).
    `progress(done, total)` counts optimizer steps: (0, total) when training starts, then after every step.
    `stop(done, total)`, called at the same points, ends training early when it returns True (the time
    budget: tune/budget.py); the adapter then holds what the steps so far learned."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )
    from transformers import PrinterCallback, TrainerCallback
    from transformers.utils import logging as hf_logging

    config = config or TrainConfig()
    rows = [(str(q), str(p), str(n)) for q, p, n in rows]
    if not rows:
        raise ValueError("no training triplets")
    torch.set_num_threads(max(1, config.threads))
    random.seed(config.seed)
    torch.manual_seed(config.seed)

    model.add_adapter(
        LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=_targets(config.target_modules),
            task_type=TaskType.FEATURE_EXTRACTION,
            bias="none",
        )
    )
    dataset = Dataset.from_dict(
        {"anchor": [r[0] for r in rows], "positive": [r[1] for r in rows], "negative": [r[2] for r in rows]}
    )
    batch_size = max(2, min(config.batch_size, len(rows)))
    loss = (
        CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size)
        if 0 < config.mini_batch_size < batch_size
        else MultipleNegativesRankingLoss(model)
    )

    result = TrainResult(examples=len(rows))

    class _Curve(TrainerCallback):  # type: ignore[misc]
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any
        ) -> None:
            if logs and "loss" in logs and math.isfinite(float(logs["loss"])):
                result.loss_curve.append([int(state.global_step), round(float(logs["loss"]), 5)])

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            result.planned_steps = int(state.max_steps or 0)
            if progress is not None:
                progress(0, result.planned_steps)
            if stop is not None:
                stop(0, result.planned_steps)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            done, total = int(state.global_step), int(state.max_steps or 0)
            if progress is not None:
                progress(done, total)
            if stop is not None and stop(done, total):
                result.stopped = True
                control.should_training_stop = True

    saved_len = model.max_seq_length
    model.max_seq_length = config.max_seq_len
    attention = [m for m in model[0].auto_model.modules() if isinstance(getattr(m, "dropout_prob", None), float)]
    saved_dropout = [m.dropout_prob for m in attention]
    for m in attention:  # BERT's SDPA self-attention reads dropout_prob at every forward
        m.dropout_prob = config.attention_dropout
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="rag-lora-") as tmp:
            args = SentenceTransformerTrainingArguments(
                output_dir=tmp,
                num_train_epochs=config.epochs,
                per_device_train_batch_size=batch_size,
                learning_rate=config.lr,
                warmup_steps=warmup_steps(math.ceil(len(rows) / batch_size) * config.epochs, config.warmup_ratio),
                weight_decay=config.weight_decay,
                lr_scheduler_type="linear",
                seed=config.seed,
                data_seed=config.seed,
                batch_sampler=BatchSamplers.NO_DUPLICATES,
                logging_strategy="steps",
                logging_steps=max(1, config.logging_steps),
                eval_strategy="no",
                save_strategy="no",
                report_to="none",
                use_cpu=True,
                dataloader_num_workers=0,
                dataloader_drop_last=False,
                disable_tqdm=True,
            )
            trainer = SentenceTransformerTrainer(
                model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[_Curve()]
            )
            trainer.remove_callback(PrinterCallback)  # the per-log print(); the curve is kept below
            output = trainer.train()
            result.steps = int(output.global_step)
    finally:
        model.max_seq_length = saved_len
        for m, p in zip(attention, saved_dropout, strict=True):
            m.dropout_prob = p
        hf_logging.set_verbosity(verbosity)
    result.seconds = round(time.perf_counter() - started, 2)
    model.eval()
    return result


def warmup_steps(total: int, ratio: float) -> int:
    """Warm-up steps of a run of `total` optimizer steps, rounded down. transformers rounds `warmup_ratio` up,
    and its linear warm-up gives the first step a learning rate of 0: a run the time budget re-planned to a
    single step then trained nothing and shipped the live model unchanged."""
    return max(0, math.floor(ratio * max(0, total)))


def _targets(modules: Sequence[str]) -> list[str] | str:
    """peft wants the shorthand "all-linear" as a bare string."""
    return "all-linear" if list(modules) == ["all-linear"] else list(modules)


def has_adapter(model: Any) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model[0].auto_model.modules())


def merge_adapter(model: Any) -> Any:
    """Fold the LoRA adapter into the base weights, in place, and return the model: every peft LoraLayer
    is replaced by its (now updated) base nn.Linear and the PEFT flags are cleared, so `save` writes a plain
    BertModel (model.safetensors, no adapter_config.json) that the ONNX exporter traces as is."""
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    transformer = model[0]
    auto = transformer.auto_model
    if hasattr(auto, "merge_and_unload"):  # a peft.PeftModel wrapper (a model loaded with its adapter)
        transformer.auto_model = auto.merge_and_unload(safe_merge=True)
        auto = transformer.auto_model
    else:
        tuner_names = [name for name, m in auto.named_modules() if isinstance(m, BaseTunerLayer)]
        with torch.no_grad():
            for name in tuner_names:
                layer = auto.get_submodule(name)
                layer.merge(safe_merge=True)
                parent_name, _, child = name.rpartition(".")
                parent = auto.get_submodule(parent_name) if parent_name else auto
                setattr(parent, child, layer.get_base_layer())
    if hasattr(auto, "peft_config"):
        del auto.peft_config
    if getattr(auto, "_hf_peft_config_loaded", False):
        auto._hf_peft_config_loaded = False
    leftover = [n for n, m in auto.named_modules() if isinstance(m, BaseTunerLayer) or "lora_" in n]
    if leftover:
        raise RuntimeError(f"adapter layers left after merging: {leftover[:5]}")
    for p in auto.parameters():
        p.requires_grad_(False)
    model.eval()
    return model
