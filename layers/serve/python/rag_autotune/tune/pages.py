"""Where the run reports and the dashboard live, and how they are assembled from the stores.

runs/<id>/report.html is written by the smoke step. reports/dashboard.html is rebuilt on demand (the
`dashboard` command) from every run record and the vote log, so it is never stale when it is asked for.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

from ..domain import Vote
from ..errors import ArtifactNotFound
from ..ports import ArtifactStore, FeedbackStore
from ..static_files import DASHBOARD_KEY
from . import report
from .runs import list_runs

_MAX_RUNS = 1000
_MAX_VOTES = 200_000


def report_key(run_id: str) -> str:
    return f"runs/{run_id}/{report.REPORT_HTML}"


def run_report(store: ArtifactStore, run_id: str | None = None) -> tuple[str, bytes]:
    """(run id, report page) of run_id, or of the newest run that has a report. ArtifactNotFound if none."""
    if run_id is not None:
        return run_id, store.get_bytes(report_key(run_id))
    for run in list_runs(store, _MAX_RUNS):
        try:
            return run["run_id"], store.get_bytes(report_key(run["run_id"]))
        except ArtifactNotFound:
            continue  # SKIPPED or FAILED before the smoke step: no report
    raise ArtifactNotFound("no tune run has a report yet (a run writes one when it reaches the smoke step)")


def votes_per_day(votes: Sequence[Vote]) -> dict[str, dict[str, int]]:
    days: dict[str, dict[str, int]] = defaultdict(lambda: {"up": 0, "down": 0})
    for v in votes:
        days[dt.datetime.fromtimestamp(v.created_at, dt.UTC).strftime("%Y-%m-%d")][v.vote] += 1
    return dict(days)


def build_dashboard(store: ArtifactStore, feedback: FeedbackStore) -> bytes:
    """The dashboard page, also written to DASHBOARD_KEY."""
    page = report.dashboard(list_runs(store, _MAX_RUNS), votes_per_day(feedback.votes(None, _MAX_VOTES))).encode()
    store.put_bytes(DASHBOARD_KEY, page, "text/html")
    return page
