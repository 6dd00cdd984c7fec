"""The run report page: before/after bars per metric and set, and the candidate's latency histogram.
Self-contained HTML with inline SVG (no scripts, no external assets)."""

from __future__ import annotations

import html as html_lib
from collections.abc import Sequence
from typing import Any

import numpy as np

_W, _BAR_H = 520, 16


def _bars(metrics: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows: list[str] = []
    y = 10
    for set_name, ba in metrics.items():
        rows.append(
            f'<text x="0" y="{y + 12}" font-weight="bold">{html_lib.escape(set_name)} '
            f"(n={ba['after'].get('n', 0)})</text>"
        )
        y += 20
        for metric in ("p@5", "hit@5", "ndcg@10"):
            for label, colour in (("before", "#9aa5b1"), ("after", "#2f80ed")):
                v = float(ba[label].get(metric, 0.0))
                rows.append(
                    f'<text x="0" y="{y + 12}">{metric} {label}</text>'
                    f'<rect x="130" y="{y}" width="{v * (_W - 200):.1f}" height="{_BAR_H - 3}" '
                    f'fill="{colour}"/><text x="{135 + v * (_W - 200):.1f}" y="{y + 12}">{v:.3f}</text>'
                )
                y += _BAR_H
            y += 6
    return f'<svg width="{_W}" height="{y + 10}" font-family="sans-serif" font-size="12">{"".join(rows)}</svg>'


def _histogram(samples: Sequence[float], bins: int = 30) -> str:
    if not samples:
        return "<p>no latency samples</p>"
    counts, edges = np.histogram(np.asarray(samples), bins=bins)
    peak = max(int(counts.max()), 1)
    bw = (_W - 40) / bins
    bars = "".join(
        f'<rect x="{30 + i * bw:.1f}" y="{150 - c / peak * 130:.1f}" width="{bw - 1:.1f}" '
        f'height="{c / peak * 130:.1f}" fill="#27ae60"><title>{edges[i]:.2f}–{edges[i + 1]:.2f} ms: {c}</title>'
        f"</rect>"
        for i, c in enumerate(counts)
    )
    axis = f'<text x="30" y="168">{edges[0]:.2f} ms</text><text x="{_W - 80}" y="168">{edges[-1]:.2f} ms</text>'
    return f'<svg width="{_W}" height="175" font-family="sans-serif" font-size="11">{bars}{axis}</svg>'


def html(report: dict[str, Any], samples: Sequence[float]) -> str:
    d = report["decision"]
    verdict = "PASSED" if d["passed"] else "REJECTED"
    reasons = "".join(f"<li>{html_lib.escape(r)}</li>" for r in d["reasons"]) or "<li>all checks passed</li>"
    lat = report["latency_ms"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tune run {html_lib.escape(report["run_id"])}</title>
<style>body{{font-family:sans-serif;max-width:760px;margin:2em auto;color:#222}}
.ok{{color:#1e7e34}}.no{{color:#b00020}}</style></head><body>
<h1>Tune run {html_lib.escape(report["run_id"])}</h1>
<p>Live {html_lib.escape(str(report["live"]))} → candidate {html_lib.escape(str(report["candidate"]))}</p>
<h2 class="{"ok" if d["passed"] else "no"}">Gate: {verdict}</h2><ul>{reasons}</ul>
<h2>Quality before → after</h2>{_bars(report["metrics"])}
<h2>Candidate encode+search latency</h2>
<p>p99 {lat["candidate_p99"]:.2f} ms over {lat["samples"]} queries (live: {lat["live_p99"]:.2f} ms)</p>
{_histogram(samples)}
<h2>Data</h2><pre>{html_lib.escape(str(report.get("counts", {})))}</pre>
</body></html>
"""
