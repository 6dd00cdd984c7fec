"""The smoke gate: a candidate goes live only if it is measurably better on held-out feedback, no worse on the
golden set (within a tolerance), and fast enough."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

METRIC = "ndcg@10"


@dataclass(frozen=True)
class GateInput:
    metrics: dict[str, dict[str, dict[str, Any]]]  # set → before/after → metric → value
    p99_ms: float
    margin: float
    golden_tolerance: float
    p99_budget_ms: float


@dataclass(frozen=True)
class Decision:
    passed: bool
    reasons: list[str] = field(default_factory=list)


def decide(g: GateInput) -> Decision:
    reasons: list[str] = []
    held = g.metrics.get("heldout")
    if not held or not held["after"].get("n"):
        reasons.append("no held-out queries with a 👍 to judge the candidate on")
    else:
        gain = held["after"][METRIC] - held["before"][METRIC]
        if gain < g.margin:
            reasons.append(
                f"held-out {METRIC} {held['before'][METRIC]:.4f} → {held['after'][METRIC]:.4f} "
                f"(gain {gain:+.4f}) is below the margin {g.margin:+.4f}"
            )
    golden = g.metrics.get("golden")
    if golden and golden["after"].get("n"):
        drop = golden["before"][METRIC] - golden["after"][METRIC]
        if drop > g.golden_tolerance:
            reasons.append(f"golden {METRIC} fell by {drop:.4f} (tolerance {g.golden_tolerance:.4f})")
    if g.p99_ms > g.p99_budget_ms:
        reasons.append(f"encode+search p99 {g.p99_ms:.2f} ms is over the budget {g.p99_budget_ms:.2f} ms")
    return Decision(not reasons, reasons)
