"""The pages users look at: one report per tune run, and a dashboard over every run.

Self-contained HTML with inline SVG: no scripts, no external assets, so a page works offline and from S3.
Every string that came from data (queries, versions, reasons) is escaped.
"""

from __future__ import annotations

import datetime as dt
import html as html_lib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

REPORT_HTML = "report.html"
_W, _BAR_H = 560, 16
_LIVE, _CANDIDATE = "#9aa5b1", "#2f80ed"
_STYLE = """body{font-family:sans-serif;max-width:820px;margin:2em auto;padding:0 1em;color:#222}
.ok{color:#1e7e34}.no{color:#b00020}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f4f6f8}
.num{text-align:right;font-variant-numeric:tabular-nums}.key span{display:inline-block;width:.9em;height:.9em;
margin:0 .3em 0 1em;vertical-align:middle}"""


def esc(value: object) -> str:
    return html_lib.escape(str(value))


def _key(*items: tuple[str, str]) -> str:
    return '<p class="key">' + "".join(f'<span style="background:{c}"></span>{esc(n)}' for n, c in items) + "</p>"


# -- charts ------------------------------------------------------------------------------------------------


def bars(metrics: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """Horizontal before/after bars per set and metric (values in 0..1)."""
    rows: list[str] = []
    y = 10
    for set_name, ba in metrics.items():
        rows.append(f'<text x="0" y="{y + 12}" font-weight="bold">{esc(set_name)} (n={ba["after"].get("n", 0)})</text>')
        y += 20
        for metric in ("p@5", "hit@5", "ndcg@10"):
            for label, colour in (("before", _LIVE), ("after", _CANDIDATE)):
                v = float(ba[label].get(metric, 0.0))
                width = v * (_W - 200)
                rows.append(
                    f'<text x="0" y="{y + 12}">{metric} {label}</text>'
                    f'<rect x="130" y="{y}" width="{width:.1f}" height="{_BAR_H - 3}" fill="{colour}"/>'
                    f'<text x="{135 + width:.1f}" y="{y + 12}">{v:.3f}</text>'
                )
                y += _BAR_H
            y += 6
    return f'<svg width="{_W}" height="{y + 10}" font-family="sans-serif" font-size="12">{"".join(rows)}</svg>'


def histograms(series: Mapping[str, Sequence[float]], bins: int = 30) -> str:
    """Overlaid latency histograms (ms) on shared bins."""
    data = {name: np.asarray(s, dtype=float) for name, s in series.items() if len(s)}
    if not data:
        return "<p>no latency samples</p>"
    every = np.concatenate(list(data.values()))
    hi = float(np.percentile(every, 99.5))  # one stray sample must not squash the chart
    edges = np.linspace(float(every.min()), max(hi, float(every.min()) + 1e-3), bins + 1)
    counts = {name: np.histogram(np.clip(s, edges[0], edges[-1]), bins=edges)[0] for name, s in data.items()}
    peak = max(int(c.max()) for c in counts.values()) or 1
    bw = (_W - 40) / bins
    colours = dict(zip(data, (_LIVE, _CANDIDATE, "#27ae60"), strict=False))
    rects = "".join(
        f'<rect x="{30 + i * bw:.1f}" y="{150 - c / peak * 130:.1f}" width="{bw - 1:.1f}" '
        f'height="{c / peak * 130:.1f}" '
        f'fill="{colours[name]}" fill-opacity="0.6"><title>{esc(name)} {edges[i]:.2f}–{edges[i + 1]:.2f} ms: {c}'
        f"</title></rect>"
        for name, cs in counts.items()
        for i, c in enumerate(cs)
    )
    axis = f'<text x="30" y="168">{edges[0]:.2f} ms</text><text x="{_W - 90}" y="168">{edges[-1]:.2f} ms</text>'
    svg = f'<svg width="{_W}" height="175" font-family="sans-serif" font-size="11">{rects}{axis}</svg>'
    return _key(*((n, colours[n]) for n in data)) + svg


def line(points: Sequence[tuple[float, float]], y_label: str, x_labels: Sequence[str] | None = None) -> str:
    """A polyline chart of (x, y) points with its min/max marked; x_labels name the first and last x."""
    if not points:
        return "<p>no data</p>"
    xs = np.asarray([p[0] for p in points], dtype=float)
    ys = np.asarray([p[1] for p in points], dtype=float)
    x0, x1 = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1
    y0, y1 = float(ys.min()), float(ys.max()) if ys.max() > ys.min() else float(ys.min()) + 1e-9
    px = 50 + (xs - x0) / (x1 - x0) * (_W - 70)
    py = 140 - (ys - y0) / (y1 - y0) * 120
    path = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py, strict=True))
    dots = "".join(
        f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{_CANDIDATE}"><title>{v:.4f}</title></circle>'
        for a, b, v in zip(px, py, ys, strict=True)
    )
    first, last = (x_labels[0], x_labels[-1]) if x_labels else (f"{x0:g}", f"{x1:g}")
    labels = (
        f'<text x="0" y="24">{y1:.3f}</text><text x="0" y="144">{y0:.3f}</text>'
        f'<text x="50" y="162">{esc(first)}</text><text x="{_W - 130}" y="162">{esc(last)}</text>'
        f'<text x="{_W / 2 - 40:.0f}" y="12">{esc(y_label)}</text>'
    )
    return (
        f'<svg width="{_W}" height="170" font-family="sans-serif" font-size="11">'
        f'<polyline points="{path}" fill="none" stroke="{_CANDIDATE}" stroke-width="1.5"/>{dots}{labels}</svg>'
    )


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"num" if isinstance(v, int | float) else ""}">{esc(v)}</td>' for v in r)
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


# -- the run report ----------------------------------------------------------------------------------------


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
        f"<body>{body}</body></html>\n"
    )


def _gate(report: Mapping[str, Any]) -> str:
    d = report["decision"]
    verdict = "PASSED" if d["passed"] else "REJECTED"
    reasons = "".join(f"<li>{esc(r)}</li>" for r in d["reasons"] or d.get("notes") or []) or (
        "<li>every check passed</li>"
    )
    th = report.get("thresholds") or {}
    rules = table(
        ["check", "threshold"],
        [
            [f"held-out {th.get('metric', 'ndcg@10')} gain ≥", th.get("margin", "")],
            ["or a tie: held-out shortfall within 2 standard errors and ≤", th.get("tie_max_drop", "")],
            ["voted questions (repeated)", "must not fall beyond noise; must rise beyond it to break a tie"],
            [f"golden {th.get('metric', 'ndcg@10')} drop ≤", th.get("golden_tolerance", "")],
            ["candidate / live encode+search p99, timed in turns ≤", th.get("p99_ratio", "")],
            ["candidate encode+search p99 (ms) ≤ (backstop)", th.get("p99_budget_ms", "")],
        ],
    )
    retrieval = report.get("retrieval") or {}
    if retrieval:
        mode, why = esc(retrieval.get("mode", "")), esc(retrieval.get("reason", ""))
        rules += f"<p>Retrieval mode: <b>{mode}</b> ({why})</p>"
    return f'<h2 class="{"ok" if d["passed"] else "no"}">Gate: {verdict}</h2><ul>{reasons}</ul>{rules}'


def _movers(report: Mapping[str, Any]) -> str:
    m = report.get("movers") or {}
    depth = m.get("depth", 40)
    out = [f"<p>Rank of the best 👍 document, live → candidate ({depth + 1} = not in the top {depth}).</p>"]
    for key, title in (("up", "Moved up most"), ("down", "Moved down most")):
        rows = [[x["query"], x["before"], x["after"], f"{x['before'] - x['after']:+d}"] for x in m.get(key) or []]
        out.append(
            f"<h3>{title}</h3>" + (table(["query", "live", "candidate", "change"], rows) if rows else "<p>none</p>")
        )
    return "".join(out)


def _training(report: Mapping[str, Any]) -> str:
    t = report.get("training") or {}
    curve = [(float(s), float(v)) for s, v in t.get("loss_curve") or []]
    counts = {**(report.get("counts") or {}), **(t.get("counts") or {})}
    config = t.get("config") or {}
    parts = ["<h2>Training loss</h2>", line(curve, "loss per step") if curve else "<p>no training record</p>"]
    parts.append(_budget(t))
    parts.append("<h2>Data</h2>" + (table(["count", "value"], sorted(counts.items())) if counts else "<p>none</p>"))
    if config:
        parts.append("<h3>Recipe</h3>" + table(["setting", "value"], sorted(config.items())))
    return "".join(parts)


def _budget(training: Mapping[str, Any]) -> str:
    """How the time budget shaped the run: triplets used and left for another night, the measured pace."""
    counts, budget = training.get("counts") or {}, training.get("budget") or {}
    if "triplets_used" not in counts:
        return ""
    used, left = counts["triplets_used"], counts.get("triplets_left", 0)
    text = f"Trained on {used} of {used + left} triplets"
    text += f"; {left} left for another night (they did not fit the time budget)." if left else "."
    rows = [
        [name, budget[key]]
        for key, name in (
            ("budget_s", "budget (s)"),
            ("seconds_per_step", "seconds per step"),
            ("planned_steps", "steps planned for every triplet"),
            ("steps_that_fit", "steps that fit"),
            ("steps", "steps trained"),
        )
        if budget.get(key) is not None
    ]
    return f"<h2>Time budget</h2><p>{esc(text)}</p>" + (table(["", "value"], rows) if rows else "")


def _memory(report: Mapping[str, Any]) -> str:
    """The feedback memory: live and candidate with and without it, the chosen threshold and weight."""
    m = report.get("memory") or {}
    rows = m.get("rows") or {}
    if not rows:
        return "<h2>Feedback memory</h2><p>" + esc("; ".join(m.get("reasons") or ["not evaluated"])) + "</p>"
    body = [
        [name, *(f"{(rows[name].get(s) or {}).get(k, 0.0):.3f}" for s in ("repeated", "heldout") for k in _METRICS)]
        for name in ("live", "live+memory", "candidate", "candidate+memory")
        if name in rows
    ]
    state = "enabled" if m.get("enabled") else "shipped disabled"
    return (
        f"<h2>Feedback memory</h2><p>{m.get('votes', 0)} votes; threshold {m.get('threshold')}, weight "
        f"{m.get('weight')} (chosen on the train split); {state}: {esc('; '.join(m.get('reasons') or []))}</p>"
        + table(["ranking", *(f"{s} {k}" for s in ("repeated", "held-out") for k in _METRICS)], body)
    )


_METRICS = ("p@5", "hit@5", "ndcg@10")


def _steering(report: Mapping[str, Any]) -> str:
    """Vote steering: the fitted radius and coefficients, and the candidate with and without it."""
    st = (report.get("memory") or {}).get("steering") or {}
    if not st:
        return ""
    head = (
        f"<h2>Vote steering</h2><p>radius {st.get('radius')}, a {st.get('a')}, b {st.get('b')}, c {st.get('c')} "
        f"(fitted on the train split); {'enabled' if st.get('enabled') else 'shipped off'}: "
        f"{esc('; '.join(st.get('reasons') or []))}</p>"
    )
    rows = st.get("rows") or {}
    if not rows:
        return head
    body = [
        [
            f"candidate {which} steering",
            *(f"{rows[s][which].get(k, 0.0):.3f}" for s in ("repeated", "heldout") for k in _METRICS),
        ]
        for which in ("without", "with")
    ]
    return head + table(["ranking", *(f"{s} {k}" for s in ("repeated", "held-out") for k in _METRICS)], body)


def html(report: Mapping[str, Any], samples: Mapping[str, Sequence[float]]) -> str:
    """The run report page. `samples`: encode+search latencies (ms) per pair, e.g. {"live": …, "candidate": …}."""
    lat = report["latency_ms"]
    body = (
        f"<h1>Tune run {esc(report['run_id'])}</h1>"
        f"<p>Live {esc(_pair(report['live']))} → candidate {esc(_pair(report['candidate']))}</p>"
        f"{_gate(report)}"
        f"<h2>Quality before → after</h2>{_key(('before (live)', _LIVE), ('after (candidate)', _CANDIDATE))}"
        f"{bars(report['metrics'])}"
        f"<h2>Encode + search latency</h2><p>p99: live {lat['live_p99']:.2f} ms, "
        f"candidate {lat['candidate_p99']:.2f} ms "
        f"over {lat['samples']} queries each</p>{histograms(samples)}"
        f"{_memory(report)}{_steering(report)}{_training(report)}<h2>Queries that moved</h2>{_movers(report)}"
    )
    return _page(f"Tune run {report['run_id']}", body)


def _pair(p: Mapping[str, Any]) -> str:
    return f"{p.get('model_version')} / {p.get('index_version')}"


# -- the dashboard -----------------------------------------------------------------------------------------


def _day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")


def dashboard(runs: Sequence[Mapping[str, Any]], votes_per_day: Mapping[str, Mapping[str, int]]) -> str:
    """Every run (oldest first): held-out hit@5/nDCG@10 and p99 over time, outcomes, and votes per day."""
    runs = sorted(runs, key=lambda r: float(r.get("started_at", 0)))
    judged = [r for r in runs if (r.get("metrics") or {}).get("heldout")]
    labels = [_day(float(r.get("started_at", 0))) for r in judged]
    charts = []
    for metric in ("ndcg@10", "hit@5"):
        pts = [(float(i), float(r["metrics"]["heldout"]["after"][metric])) for i, r in enumerate(judged)]
        charts.append(f"<h3>held-out {metric} of each candidate</h3>{line(pts, metric, labels)}")
    timed = [r for r in runs if r.get("latency_ms")]
    p99 = [(float(i), float(r["latency_ms"]["candidate_p99"])) for i, r in enumerate(timed)]
    charts.append(
        "<h3>candidate encode+search p99 (ms)</h3>"
        + line(p99, "p99 ms", [_day(float(r.get("started_at", 0))) for r in timed])
    )
    days = sorted(votes_per_day)
    vote_rows = [[d, votes_per_day[d].get("up", 0), votes_per_day[d].get("down", 0)] for d in days]
    up = [
        (float(i), float(votes_per_day[d].get("up", 0) + votes_per_day[d].get("down", 0))) for i, d in enumerate(days)
    ]
    run_rows = [
        [
            r.get("run_id", ""),
            r.get("status", ""),
            _day(float(r.get("started_at", 0))),
            _delta(r, "heldout"),
            _delta(r, "repeated"),
            (r.get("latency_ms") or {}).get("candidate_p99", ""),
            (r.get("candidate") or {}).get("model_version", ""),
        ]
        for r in reversed(runs)
    ]
    body = (
        f"<h1>RAG-Autotune: {len(runs)} tune runs</h1>{''.join(charts)}"
        f"<h2>Feedback per day</h2>{line(up, 'votes per day', days) if up else '<p>no votes yet</p>'}"
        f"{table(['day', '👍', '👎'], vote_rows) if vote_rows else ''}"
        "<h2>Runs</h2>"
        + table(["run", "status", "day", "held-out nDCG@10", "repeated nDCG@10", "p99 ms", "model"], run_rows)
    )
    return _page("RAG-Autotune dashboard", body)


def _delta(run: Mapping[str, Any], name: str) -> str:
    m = (run.get("metrics") or {}).get(name)
    if not m:
        return ""
    return f"{m['before']['ndcg@10']:.3f} → {m['after']['ndcg@10']:.3f}"
