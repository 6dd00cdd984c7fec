"""The train step's time budget: how long training may run, how many steps fit, and which triplets to keep.

Pure logic, no torch: the train step (train_step.py) and its tests drive it with an injected clock.

- `train_budget_s`: the seconds the train step may spend up to the end of training (loading, measuring,
  training). Unless RAG_TUNE_TRAIN_BUDGET_S sets it, it is the time the invocation has left (the Lambda
  context, or a SageMaker job's stopping condition) minus `TRAIN_RESERVE_S`, which merge, export, parity and
  upload need after training. The function's timeout is written once, in template.yaml.
- `BudgetWatch`: called after every optimizer step, it measures seconds per step (after a warm-up step,
  which pays for thread pools and allocator growth) and says when to stop: when the planned steps will not
  fit, so that the step can re-plan, or when the next step would end past the deadline.
- `steps_that_fit` and `choose_triplets`: the re-plan. Keep as many triplets as the measured pace allows:
  newest first, every query represented, hard negatives before random ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import RagError
from .dataset import Triplet

# Merge, ONNX export, int8 quantisation, parity and upload of a MiniLM-sized model take a small, fixed share
# of a Lambda's 15 minutes whatever the votes; this leaves them room twice over on 2 vCPUs.
TRAIN_RESERVE_S = 180.0
# The measured pace is stretched by this much when planning: later batches may hold longer texts.
PACE_MARGIN = 1.15
WARMUP_STEPS = 1  # not timed
TIMED_STEPS = 2


class TrainBudgetTooSmall(RagError):
    """Not one optimizer step fits the training budget: the run fails at once with this reason instead of
    running into the function's timeout."""

    code = "train_budget_too_small"


def train_budget_s(configured: float | None, remaining_s: float | None) -> float:
    """RAG_TUNE_TRAIN_BUDGET_S when set, else the invocation's remaining seconds minus TRAIN_RESERVE_S."""
    if configured is not None:
        return float(configured)
    if remaining_s is None:
        raise TrainBudgetTooSmall(
            "no training budget: set RAG_TUNE_TRAIN_BUDGET_S, or run where the remaining time is known "
            "(a Lambda context, a SageMaker job's stopping condition)"
        )
    return float(remaining_s) - TRAIN_RESERVE_S


@dataclass
class BudgetWatch:
    """`(done, total) -> stop?` after each optimizer step of one training run (train_lora's `stop`).

    `replan=True` (the first run, on every triplet): stop as soon as the measured pace says the remaining
    steps end past `deadline`. Always: stop when the next step would end past `deadline`."""

    clock: Callable[[], float]
    deadline: float
    replan: bool = True
    warmup: int = WARMUP_STEPS
    timed: int = TIMED_STEPS
    marks: dict[int, float] = field(default_factory=dict)  # steps done → clock
    stopped: str | None = None  # "over budget" (re-plan) or "deadline"

    def __call__(self, done: int, total: int) -> bool:
        now = self.clock()
        self.marks[done] = now
        if done == 0 or done >= total:
            return False
        pace = self.seconds_per_step or 0.0
        if self.replan and self.measured and now + (total - done) * pace * PACE_MARGIN > self.deadline:
            self.stopped = "over budget"
        elif now + pace * PACE_MARGIN > self.deadline:
            self.stopped = "deadline"
        return self.stopped is not None

    @property
    def measured(self) -> bool:
        return self.warmup in self.marks and self.warmup + self.timed in self.marks

    @property
    def seconds_per_step(self) -> float | None:
        """The mean of the timed steps once they ran; before that, the slowest step so far (the warm-up)."""
        if self.measured:
            return (self.marks[self.warmup + self.timed] - self.marks[self.warmup]) / self.timed
        done = sorted(self.marks)
        gaps = [self.marks[b] - self.marks[a] for a, b in zip(done, done[1:], strict=False)]
        return max(gaps) if gaps else None


def steps_that_fit(seconds_left: float, seconds_per_step: float) -> int:
    if seconds_per_step <= 0:
        raise ValueError("seconds per step must be positive")
    return max(0, math.floor(seconds_left / (seconds_per_step * PACE_MARGIN)))


def triplet_capacity(steps: int, batch_size: int, epochs: int) -> int:
    """Triplets that `steps` optimizer steps cover in `epochs` passes of `batch_size`."""
    return max(0, steps) * max(1, batch_size) // max(1, epochs)


@dataclass(frozen=True)
class Chosen:
    kept: list[Triplet]  # in their original order
    left: list[Triplet]  # for another night

    def counts(self) -> dict[str, int]:
        return {
            "triplets_used": len(self.kept),
            "triplets_left": len(self.left),
            "queries_used": len({t.query for t in self.kept}),
            "queries_left": len({t.query for t in self.left} - {t.query for t in self.kept}),
            "hard_negatives_used": sum(1 for t in self.kept if t.hard),
        }


def choose_triplets(rows: Sequence[Triplet], capacity: int) -> Chosen:
    """At most `capacity` of `rows`. First one triplet per query (its newest hard one, else its newest), the
    queries newest first; then the rest, hard negatives first, newest first. Ties keep the input order.
    Every query is represented whenever capacity allows it."""
    if capacity >= len(rows):
        return Chosen(list(rows), [])
    newest_first = sorted(range(len(rows)), key=lambda i: (-rows[i].at, i))
    representative: dict[str, int] = {}  # insertion order: queries by their newest triplet
    for i in newest_first:
        current = representative.get(rows[i].query)
        if current is None or (rows[i].hard and not rows[current].hard):
            representative[rows[i].query] = i
    picked = list(representative.values())[: max(0, capacity)]
    taken = set(picked)
    rest = sorted((i for i in range(len(rows)) if i not in taken), key=lambda i: (not rows[i].hard, -rows[i].at, i))
    taken.update(rest[: max(0, capacity - len(picked))])
    return Chosen(
        [r for i, r in enumerate(rows) if i in taken],
        [r for i, r in enumerate(rows) if i not in taken],
    )
