"""The smoke gate: a candidate goes live only if it gains the margin on held-out feedback (or ties there and is
measurably better on the voted questions it trained on), does not fall on those voted questions, is no worse on
the golden set (within a tolerance), and is not slower than live beyond a ratio (both timed in turns in the same
step, tune/latency.py), with an absolute p99 budget as a backstop.

Why a tie: the held-out questions were judged by votes on what live showed, so their condensed lists hold only
live's own top documents. Once live orders those well, no candidate can gain there, however much better it finds
what live never showed. A held-out change that is noise (within TIE_Z standard errors of the per-question
differences, and no larger than `tie_max_drop`) is a tie, and the questions the candidate trained on decide."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..domain import RETRIEVAL_MODES, RetrievalMode
from .latency import p99_ratio

METRIC = "ndcg@10"
TIE_Z = 2.0  # standard errors of the paired differences within which a change is noise (about 95%)


@dataclass(frozen=True)
class GateInput:
    metrics: dict[str, dict[str, dict[str, Any]]]  # set → before/after → metric → value
    p99_ms: float
    margin: float
    golden_tolerance: float
    p99_budget_ms: float  # the backstop: generous, the machine's speed must not decide
    live_p99_ms: float = 0.0  # live's p99, sampled alongside the candidate's
    p99_max_ratio: float = float("inf")  # candidate p99 / live p99
    tie_max_drop: float = 0.0  # the largest held-out shortfall below the margin that can count as a tie


@dataclass(frozen=True)
class Decision:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # why it was rejected; empty when it passed
    notes: list[str] = field(default_factory=list)  # how a check passed when it did not pass plainly (a tie)


def _stats(p: Mapping[str, Any] | None) -> tuple[int, float, float]:
    """(n, mean, standard error) of per-query differences (metrics.Paired.as_dict); n 0 when there are none."""
    p = p or {}
    return int(p.get("n", 0)), float(p.get("mean", 0.0)), float(p.get("se", 0.0))


def _paired(m: Mapping[str, Any] | None) -> tuple[int, float, float]:
    """_stats of a gate set's per-query differences."""
    return _stats((m or {}).get("paired"))


def _change(name: str, m: Mapping[str, Any]) -> str:
    n, mean, se = _paired(m)
    return (
        f"{name} {METRIC} {m['before'][METRIC]:.4f} → {m['after'][METRIC]:.4f} "
        f"(gain {mean:+.4f} ± {se:.4f} standard error, n={n})"
    )


def within_noise(shortfall: float, paired: Mapping[str, Any] | None, max_drop: float) -> bool:
    """Whether a ranking's shortfall (how far its mean fell short of what it had to reach) is noise: within
    TIE_Z standard errors of the per-query differences (`paired`: metrics.Paired.as_dict) and at most max_drop."""
    n, _, se = _stats(paired)
    return n >= 2 and shortfall <= min(TIE_Z * se, max_drop)


def _tie(held: Mapping[str, Any], voted: Mapping[str, Any] | None, g: GateInput) -> tuple[str | None, str]:
    """(a note when held-out's shortfall below the margin is a tie the voted questions break, None otherwise;
    what it fell short of)."""
    if not within_noise(g.margin - _paired(held)[1], held.get("paired"), g.tie_max_drop):
        return None, f"beyond a tie (within {TIE_Z:g} standard errors and {g.tie_max_drop:.4f})"
    vn, vmean, vse = _paired(voted)
    if vn < 2 or vmean - TIE_Z * vse <= 0:
        return None, "a tie, but the voted questions it trained on did not rise beyond their noise"
    return (
        f"{_change('held-out', held)} is a tie with the margin {g.margin:+.4f}; the voted questions it trained on "
        f"rose beyond their noise: {_change('repeated', voted or {})}"
    ), ""


def decide(g: GateInput) -> Decision:
    reasons: list[str] = []
    notes: list[str] = []
    held, voted = g.metrics.get("heldout"), g.metrics.get("repeated")
    if not held or not held["after"].get("n"):
        reasons.append("no held-out queries with a 👍 to judge the candidate on")
    else:
        gain = held["after"][METRIC] - held["before"][METRIC]
        if gain < g.margin:
            note, short = _tie(held, voted, g)
            if note:
                notes.append(note)
            else:
                reasons.append(
                    f"held-out {METRIC} {held['before'][METRIC]:.4f} → {held['after'][METRIC]:.4f} "
                    f"(gain {gain:+.4f}) is below the margin {g.margin:+.4f}, {short}"
                )
    vn, vmean, vse = _paired(voted)
    if vn >= 2 and vmean + TIE_Z * vse < 0:
        reasons.append(f"{_change('repeated', voted or {})}: it fell on the voted questions it trained on")
    golden = g.metrics.get("golden")
    if golden and golden["after"].get("n"):
        drop = golden["before"][METRIC] - golden["after"][METRIC]
        if drop > g.golden_tolerance:
            reasons.append(f"golden {METRIC} fell by {drop:.4f} (tolerance {g.golden_tolerance:.4f})")
    ratio = p99_ratio(g.p99_ms, g.live_p99_ms)
    if ratio > g.p99_max_ratio:
        reasons.append(
            f"encode+search p99 {g.p99_ms:.2f} ms is {ratio:.2f}× live's {g.live_p99_ms:.2f} ms measured alongside "
            f"(limit {g.p99_max_ratio:.2f}×)"
        )
    if g.p99_ms > g.p99_budget_ms:
        reasons.append(f"encode+search p99 {g.p99_ms:.2f} ms is over the budget {g.p99_budget_ms:.2f} ms")
    return Decision(not reasons, reasons, notes if not reasons else [])


# ---- the retrieval mode: chosen on the train split, checked on held-out ----


@dataclass(frozen=True)
class ModeChoice:
    mode: RetrievalMode
    reason: str


def choose_mode(
    train: Mapping[str, dict[str, Any]], heldout: Mapping[str, dict[str, Any]], tie_max_drop: float = 0.0
) -> ModeChoice:
    """The mode with the best METRIC on the train split (ties go to dense: one query instead of two); a hybrid
    mode ships only if it does not lower held-out METRIC below dense's beyond noise (a held-out mode's
    "vs_dense": its per-query differences from dense, as the gate's tie reads them). `train`/`heldout`: mode →
    evaluate()."""
    if "dense" not in train or not train["dense"].get("n"):
        return ModeChoice("dense", "no train queries with a 👍 to choose the retrieval mode on")
    modes = [m for m in RETRIEVAL_MODES if m in train]
    best = max(modes, key=lambda m: (round(train[m][METRIC], 6), m == "dense"))
    said = ", ".join(f"{m} {train[m][METRIC]:.4f}" for m in modes)
    if best == "dense":
        return ModeChoice("dense", f"train {METRIC}: {said}")
    held_best, held_dense = heldout.get(best), heldout.get("dense")
    if held_best and held_dense and held_dense.get("n"):
        drop = held_dense[METRIC] - held_best[METRIC]
        if drop > 1e-9 and not within_noise(drop, held_best.get("vs_dense"), tie_max_drop):
            return ModeChoice(
                "dense",
                f"train {METRIC}: {said}; but {best} lowers held-out {METRIC} "
                f"{held_dense[METRIC]:.4f} → {held_best[METRIC]:.4f}: dense",
            )
        said += f"; held-out {METRIC} dense {held_dense[METRIC]:.4f}, {best} {held_best[METRIC]:.4f}"
        said += " (a tie within noise)" if drop > 1e-9 else ""
    return ModeChoice(best, f"train {METRIC}: {said}")


# ---- the feedback memory: its threshold and weight are chosen on the train split, then checked on held-out ----

MEMORY_THRESHOLDS = (0.9, 0.95, 0.98)
MEMORY_WEIGHTS = (0.3, 1.0, 2.0)  # in spreads of the candidates' scores (memory.rerank)


@dataclass(frozen=True)
class MemoryPoint:
    """One grid point, scored on the train split (voted queries that are not held out)."""

    threshold: float
    weight: float
    repeated: float  # METRIC of the train queries, their own votes remembered (the same question again)
    unseen: float  # METRIC of the train queries with only the other fold's votes remembered (a new question)


def choose_memory(grid: list[MemoryPoint], unseen_without: float) -> MemoryPoint:
    """The best repeated-query METRIC among the points that do not lower unseen queries (the votes of other
    questions must not hurt this one); ties go to the higher threshold and the smaller weight. When every point
    lowers unseen queries: the most conservative point, and the held-out check decides."""
    safe = [g for g in grid if g.unseen >= unseen_without - 1e-9]
    if not safe:
        return max(grid, key=lambda g: (g.threshold, -g.weight))
    return max(safe, key=lambda g: (round(g.repeated, 6), round(g.unseen, 6), g.threshold, -g.weight))


def memory_verdict(heldout_without: dict[str, Any] | None, heldout_with: dict[str, Any] | None) -> Decision:
    """The memory ships enabled only if it does not lower held-out METRIC (queries whose votes it never saw)."""
    return _no_drop("the memory", "shipped disabled", heldout_without, heldout_with, unjudged_ships=True)


def _no_drop(
    what: str, off: str, without: dict[str, Any] | None, with_: dict[str, Any] | None, *, unjudged_ships: bool
) -> Decision:
    """Whether `what` keeps held-out METRIC (with_ ≥ without); without held-out queries, `unjudged_ships`."""
    if not without or not without.get("n") or with_ is None:
        return Decision(
            unjudged_ships, [f"no held-out queries to check {what} on" + ("" if unjudged_ships else f": {off}")]
        )
    before, after = without[METRIC], with_[METRIC]
    if after < before - 1e-9:
        return Decision(False, [f"{what} lowers held-out {METRIC} {before:.4f} → {after:.4f}: {off}"])
    return Decision(True, [f"held-out {METRIC} {before:.4f} → {after:.4f} with {what}"])


# ---- vote steering: its radius and coefficients are fitted on the train split, then checked on held-out ----

STEER_RADII = (0.6, 0.7, 0.8, 0.9)  # below the memory's thresholds: related questions, not the same one
STEER_B = (0.0, 0.5, 1.0)
STEER_C = (0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass(frozen=True)
class SteerPoint:
    """One grid point (a is 1: only c/a matters to a ranking), scored on the train split."""

    radius: float
    b: float
    c: float
    unseen: float  # METRIC of the train queries steered by the other fold's votes only (related questions)


def choose_steering(grid: list[SteerPoint], unseen_without: float) -> SteerPoint | None:
    """The best unseen METRIC; ties go to the wider-apart radius (fewer questions steered) and the smaller c.
    None when no point beats the unsteered search: steering ships off."""
    better = [g for g in grid if g.unseen > unseen_without + 1e-9]
    if not better:
        return None
    return max(better, key=lambda g: (round(g.unseen, 6), g.radius, -g.c, -g.b))


def steering_verdict(heldout_without: dict[str, Any] | None, heldout_with: dict[str, Any] | None) -> Decision:
    """Steering ships enabled only if it does not lower held-out METRIC (questions whose own votes it never saw)."""
    return _no_drop("steering", "shipped off", heldout_without, heldout_with, unjudged_ships=False)
