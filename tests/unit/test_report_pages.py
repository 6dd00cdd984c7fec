"""Run report and dashboard pages: self-contained, escaped, and showing what the issue lists."""

from __future__ import annotations

from rag_autotune.domain import VersionPair, Vote
from rag_autotune.tune import report
from rag_autotune.tune.metrics import Judged, movers
from rag_autotune.tune.pages import votes_per_day

RANKS = {
    "live": {"q1": ["a", "b", "c"], "q2": ["x", "y", "z"], "q3": ["m", "n"]},
    "cand": {"q1": ["c", "a", "b"], "q2": ["y", "x", "z"], "q3": ["m", "n"]},
}


def test_movers_rank_of_the_best_thumbs_up_both_ways() -> None:
    judged = [Judged("q1", frozenset({"c"})), Judged("q2", frozenset({"x"})), Judged("q3", frozenset({"m"}))]
    judged.append(Judged("q1", frozenset({"c"})))  # the same query twice counts once
    up, down = movers(RANKS["live"].__getitem__, RANKS["cand"].__getitem__, judged, depth=40)
    assert [(m.query, m.before, m.after, m.gain) for m in up] == [("q1", 3, 1, 2)]
    assert [(m.query, m.before, m.after, m.gain) for m in down] == [("q2", 1, 2, -1)]
    missing = movers(lambda q: ["a"], lambda q: ["z", "b"], [Judged("q", frozenset({"b"}))], depth=40)
    assert [(m.before, m.after) for m in missing[0]] == [(41, 2)]  # not retrieved = depth + 1


def _report() -> dict:  # type: ignore[type-arg]
    before = {"p@5": 0.2, "hit@5": 0.8, "ndcg@10": 0.7, "n": 12}
    after = {"p@5": 0.24, "hit@5": 0.9, "ndcg@10": 0.78, "n": 12}
    return {
        "run_id": "r<1>",
        "live": {"model_version": "v0", "index_version": "v0-c1"},
        "candidate": {"model_version": "v1", "index_version": "v1-c1"},
        "metrics": {"heldout": {"before": before, "after": after}},
        "latency_ms": {"candidate_p99": 3.2, "live_p99": 3.0, "samples": 300},
        "decision": {"passed": False, "reasons": ["held-out <script>alert(1)</script> fell"]},
        "thresholds": {"metric": "ndcg@10", "margin": 0.01, "golden_tolerance": 0.02, "p99_budget_ms": 15.0},
        "counts": {"votes": 40, "triplets": 31},
        "training": {"loss_curve": [[1, 2.1], [2, 1.7], [3, 1.2]], "config": {"rank": 16}, "counts": {}},
        "movers": {"up": [{"query": "<b>pipe</b>", "before": 7, "after": 1}], "down": [], "depth": 40},
    }


def test_run_report_page_has_every_section_and_escapes_data() -> None:
    page = report.html(_report(), {"live": [1.0, 2.0, 3.0], "candidate": [1.5, 2.5, 3.5]})
    for section in (
        "Gate: REJECTED",
        "Quality before",
        "Encode + search latency",
        "Training loss",
        "Data",
        "Queries that moved",
        "Moved up most",
    ):
        assert section in page
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;pipe&lt;/b&gt;" in page
    assert page.count("<svg") == 3  # bars, the two-series histogram, the loss curve
    assert "http://" not in page and "https://" not in page  # nothing fetched from anywhere
    assert "0.01" in page and "15.0" in page  # the thresholds beside the verdict


def test_dashboard_shows_history_and_votes_per_day() -> None:
    pair = VersionPair("v0", "v0-c1")
    votes = [
        Vote("q", "d", "d#0", "up", 1, "q", pair, 86400 * 3 + 5),
        Vote("q", "e", "e#0", "down", 2, "q", pair, 86400 * 3 + 9),
        Vote("q", "d", "d#0", "up", 1, "q", pair, 86400 * 4),
    ]
    days = votes_per_day(votes)
    assert days == {"1970-01-04": {"up": 1, "down": 1}, "1970-01-05": {"up": 1, "down": 0}}
    runs = [{**_report(), "run_id": f"run{i}", "status": "SWAPPED", "started_at": 86400 * (3 + i)} for i in range(3)]
    runs.append({"run_id": "skipped", "status": "SKIPPED", "started_at": 86400 * 9})
    page = report.dashboard(runs, days)
    assert "4 tune runs" in page and "held-out ndcg@10" in page and "p99" in page
    assert all(f"run{i}" in page for i in range(3)) and "SKIPPED" in page
    assert "1970-01-04" in page and "Feedback per day" in page


def test_stored_page_is_html_or_a_json_404() -> None:
    import json

    from rag_autotune.static_files import DASHBOARD_KEY, stored_page
    from tests.fakes import MemoryArtifactStore

    store = MemoryArtifactStore()
    missing = stored_page(store, DASHBOARD_KEY, "no dashboard yet")
    assert missing.status == 404 and json.loads(missing.body)["error"]["message"] == "no dashboard yet"
    store.put_bytes(DASHBOARD_KEY, b"<!doctype html><p>runs</p>", "text/html")
    found = stored_page(store, DASHBOARD_KEY, "no dashboard yet")
    assert found.status == 200 and found.headers["Content-Type"].startswith("text/html") and "runs" in found.body


def test_run_report_says_how_many_triplets_were_used_and_left_by_the_time_budget() -> None:
    budget = {"budget_s": 720.0, "seconds_per_step": 19.8, "planned_steps": 53, "steps_that_fit": 30, "steps": 30}
    counts = {"triplets": 1676, "triplets_used": 960, "triplets_left": 716}
    run = {**_report(), "training": {**_report()["training"], "counts": counts, "budget": budget}}
    page = report.html(run, {"live": [1.0], "candidate": [1.0]})
    assert "Time budget" in page and "Trained on 960 of 1676 triplets; 716 left for another night" in page
    assert "19.8" in page and "53" in page
    everything = {**run, "training": {**run["training"], "counts": {"triplets_used": 31, "triplets_left": 0}}}
    assert "Trained on 31 of 31 triplets." in report.html(everything, {"live": [1.0], "candidate": [1.0]})
    assert "Time budget" not in report.html(_report(), {"live": [1.0], "candidate": [1.0]})  # an older run
