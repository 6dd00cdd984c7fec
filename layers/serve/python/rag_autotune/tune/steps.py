"""The step logic behind each Lambda of the tune workflow (train lives in train_step.py: it needs torch; the
embed fan-out in fanout.py).

State passed between steps (the `$.run` object, `state.RunState`) is small JSON: ids, versions, counts and S3
keys, so each step shows readable input/output in the Step Functions console. Data goes through the artifact
store. Each step takes `now`, the clock, from its handler."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Literal

from ..ask import OVERSAMPLE
from ..chunking import embed_text
from ..domain import RETRIEVAL_MODES, RetrievalMode, VersionPair
from ..errors import ArtifactNotFound, ConflictError, NotReady, RagError
from ..golden import GOLDEN_KEY
from ..memory import MemoryParams, memory_key, oldest_vote
from ..memory.vectors import unpack_vector
from ..ports import ArtifactStore, Encoder, FeedbackStore, VectorIndex, Vectors
from ..retrieval import NO_SPARSE
from ..schemas import AskRequest
from ..settings import Settings
from ..versions import (
    corpus_generation,
    index_version,
    model_prefix,
    model_versions,
    next_model_version,
    read_manifest,
    read_stats,
    stored_mode,
    swap,
    write_stats,
)
from . import report as report_mod
from .dataset import QueryVotes, group_votes, judged, mine_negatives, split, triplets
from .fanout import fanout_prefix
from .gate import METRIC, GateInput, ModeChoice, choose_mode, decide
from .latency import interleaved
from .memory_eval import evaluate_memory
from .metrics import Judged, evaluate, movers, paired_ndcg
from .runs import (
    ProgressWriter,
    RunLocked,
    acquire_lock,
    failure_reason,
    list_runs,
    read_progress,
    read_run,
    record_step,
    release_lock,
    step_started,
    update_run,
)
from .state import CleanupEvent, RunCounts, RunOutcome, RunStart, RunState, StepError


class ManifestConflict(RagError):
    """The live pointer moved during the run (an ingest or a rollback): the candidate is stale."""

    code = "manifest_conflict"


class NotEnoughFeedback(RagError):
    code = "not_enough_feedback"


def _write_jsonl(store: ArtifactStore, key: str, rows: Iterable[dict[str, Any]]) -> int:
    lines = [json.dumps(r) for r in rows]
    store.put_bytes(key, ("\n".join(lines) + "\n").encode() if lines else b"", "application/x-ndjson")
    return len(lines)


def read_jsonl(store: ArtifactStore, key: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in store.get_bytes(key).decode().splitlines() if line.strip()]


def _step(
    store: ArtifactStore, run_id: str, name: str, started: float, now: Callable[[], float], **fields: Any
) -> None:
    record_step(store, run_id, name, round(now() - started, 2), **fields)


def step_progress(
    store: ArtifactStore,
    run_id: str,
    step: str,
    unit: str,
    clock: Callable[[], float],
    log: Callable[[int, int], None] | None = None,
) -> Callable[[int, int], None]:
    """A long step's `(done, total)` callback: the run's progress object (throttled), and `log` if given."""
    writer = ProgressWriter(store, run_id, step, unit, clock)
    if log is None:
        return writer

    def report(done: int, total: int) -> None:
        log(done, total)
        writer(done, total)

    return report


# ---------------------------------------------------------------- prepare


def prepare(
    start: RunStart,
    *,
    store: ArtifactStore,
    feedback: Any,
    index: VectorIndex,
    settings: Settings,
    now: Callable[[], float],
    load_encoder: Callable[[str], Encoder] | None = None,
) -> RunState:
    """`load_encoder` (the live model's): only mined negatives need it, for the questions whose votes carry no
    vector of the live model."""
    run_id = start.run_id
    started = now()
    try:
        acquire_lock(store, run_id, started)
    except RunLocked as exc:
        update_run(
            store,
            run_id,
            status="FAILED",
            reason=f"RunLocked: {exc}",
            started_at=started,
            finished_at=now(),
            trigger=start.trigger,
        )
        raise
    update_run(
        store,
        run_id,
        status="RUNNING",
        step="prepare",
        step_started_at=started,
        started_at=started,
        trigger=start.trigger,
        steps={},
    )
    found = read_manifest(store)
    if found is None:
        raise NotReady("nothing is live: ingest a corpus first")
    manifest, etag = found
    live = manifest.live
    past = list_runs(store, 1000)
    reaped = reap_abandoned_runs(store, index, past, run_id, now)
    if reaped:
        update_run(store, run_id, reaped=reaped)

    history = feedback.votes(None, limit=10**9)[-settings.tune_max_feedback :]
    last_ok = max((float(r.get("finished_at", 0)) for r in past if r.get("status") == "SWAPPED"), default=0.0)
    new_votes = sum(1 for v in history if v.created_at > last_ok)
    prefix = f"runs/{run_id}/"
    counts = RunCounts(votes=len(history), new_votes=new_votes)
    base: dict[str, Any] = {"run_id": run_id, "live": live, "live_etag": etag, "prefix": prefix}
    if new_votes < settings.tune_min_feedback:
        reason = f"not enough feedback: {new_votes} new vote(s) since the last swap, need {settings.tune_min_feedback}"
        return _skip(store, RunState(**base, counts=counts, status="SKIPPED", reason=reason), now)

    groups = group_votes(history)
    parts = split(groups, settings.tune_heldout_fraction)
    texts = training_texts(index, live.index_version)
    corpus_sample = list(texts.values())
    if settings.tune_mined_negatives:
        encode = load_encoder(live.model_version).encode if load_encoder is not None else None
        mine(parts.train, index, live, settings.tune_mined_negatives, encode)
    rows = triplets(parts.train, texts.get, corpus_sample, seed=len(history))
    counts = RunCounts(
        votes=counts.votes,
        new_votes=counts.new_votes,
        queries=len(groups),
        train_queries=len(parts.train),
        heldout_queries=len(parts.heldout),
        triplets=len(rows),
        hard_negatives=sum(1 for t in rows if t.hard),
        mined_negatives=sum(1 for t in rows if t.mined),
    )
    _write_jsonl(
        store,
        prefix + "train.jsonl",
        (
            {"query": t.query, "positive": t.positive, "negative": t.negative, "hard": t.hard, "at": t.at}
            | ({"mined": True} if t.mined else {})
            for t in rows
        ),
    )
    _write_jsonl(
        store,
        prefix + "heldout.jsonl",
        ({"query": j.query, "relevant": sorted(j.relevant), "judged": sorted(j.judged)} for j in judged(parts.heldout)),
    )
    _write_jsonl(
        store,
        prefix + "repeated.jsonl",
        ({"query": j.query, "relevant": sorted(j.relevant), "judged": sorted(j.judged)} for j in judged(parts.train)),
    )
    if not rows:
        reason = "not enough feedback: no 👍 on training queries"
        return _skip(store, RunState(**base, counts=counts, status="SKIPPED", reason=reason), now)

    model = _next_model(store, live.model_version, past)
    candidate = VersionPair(model, index_version(model, corpus_generation(live.index_version)))
    update_run(store, run_id, counts=counts.to_event(), live=live.as_dict(), candidate=candidate.as_dict())
    _step(store, run_id, "prepare", started, now)
    return RunState(**base, counts=counts, status="RUNNING", candidate=candidate)


def training_texts(index: VectorIndex, version: str) -> dict[str, str]:
    """chunk id → exactly what the index embeds for it: training on anything else trains another task."""
    return {c.chunk_id: embed_text(c) for c in index.chunks(version)}


MINE_DEPTH = 20  # hits searched per query for mined negatives: the shown top 5 and what ranks just below


def mine(
    train: Sequence[QueryVotes],
    index: VectorIndex,
    live: VersionPair,
    per_query: int,
    encode: Callable[[Sequence[str]], Vectors] | None = None,
) -> None:
    """Fill each train query's `mined` from the live index, ranked by the live model's vector of the query: the
    one its votes carry when the live model made it, else encoded now (votes from /feedback carry none; another
    model's ranking says nothing about what this one gets wrong). Without `encode`, only carried vectors."""
    asked = [g for g in train if g.up]
    missing = [g.query for g in asked if not (g.vector and g.model == live.model_version)]
    fresh = dict(zip(missing, encode(missing), strict=True)) if missing and encode is not None else {}
    for g in asked:
        carried = g.vector and g.model == live.model_version
        vector = unpack_vector(g.vector) if carried else fresh.get(g.query)
        if vector is not None:
            hits = index.search(live.index_version, vector, MINE_DEPTH)
            g.mined = mine_negatives(g, [(h.chunk.chunk_id, h.chunk.doc_id) for h in hits], per_query)


def _skip(store: ArtifactStore, skipped: RunState, now: Callable[[], float]) -> RunState:
    counts = skipped.counts.to_event()
    update_run(store, skipped.run_id, status="SKIPPED", reason=skipped.reason, counts=counts, finished_at=now())
    release_lock(store, skipped.run_id)
    return skipped


FINISHED = frozenset({"SWAPPED", "REJECTED", "SKIPPED", "FAILED"})


def reap_abandoned_runs(
    store: ArtifactStore, index: VectorIndex, runs: Sequence[dict[str, Any]], current: str, now: Callable[[], float]
) -> list[str]:
    """Runs that never finished (their Lambda was killed, the execution was stopped or timed out, so no Catch
    ran) leave a shadow model and index behind. The caller holds the run lock, so none of them is still running:
    remove what each made, unless the manifest names it, and mark the run FAILED. Returns what was removed."""
    removed: list[str] = []
    for run in runs:
        if run.get("run_id") == current or run.get("status") in FINISHED:
            continue
        run_id = str(run["run_id"])
        why = StepError(error="RunAbandoned", cause=f"abandoned (no cleanup ran); reaped by run {current}")
        named = run.get("candidate") or {}  # the run record's copy of its candidate, if Prepare got that far
        candidate = VersionPair(named["model_version"], named["index_version"]) if named else None
        outcome = _close_run(store, index, run_id, candidate, "FAILED", _failure(store, run_id, why, now), now)
        removed += outcome.removed
    return removed


def _next_model(store: ArtifactStore, live_model: str, runs: Sequence[dict[str, Any]]) -> str:
    """One past every model ever started, by its files or by a run record (a failed run's number is not
    reused: its leftovers are gone, but logs and reports still name it)."""
    started = [k.split("/")[1] for k in store.list_keys("models/")]
    named = [str((r.get("candidate") or {}).get("model_version", "")) for r in runs]
    return next_model_version([*started, *named, live_model])


# ---------------------------------------------------------------- smoke


RANK_DEPTH = 40
LATENCY_DEPTH = AskRequest.model_fields["top_k"].default * OVERSAMPLE  # what /ask fetches for its default top_k


def cached_encoder(encoder: Encoder) -> Callable[[str], Vectors]:
    """One encoding per query, however many modes and metrics rank it."""
    return functools.lru_cache(maxsize=4096)(lambda query: encoder.encode([query])[0])


def ranker(
    encoder: Encoder,
    index: VectorIndex,
    version: str,
    depth: int = RANK_DEPTH,
    mode: RetrievalMode = "dense",
    vector_of: Callable[[str], Vectors] | None = None,
) -> Callable[[str], list[str]]:
    """Doc ids best first for a query, as the version answers in `mode`. vector_of: a shared encoding cache."""
    vector_of = vector_of or cached_encoder(encoder)

    @functools.lru_cache(maxsize=4096)  # the metrics and the movers table rank the same queries
    def rank(query: str) -> list[str]:
        hits = index.query(version, vector_of(query), query, depth, mode).hits
        seen: dict[str, None] = {}
        for h in hits:
            seen.setdefault(h.chunk.doc_id, None)
        return list(seen)

    return rank


def searcher(encoder: Encoder, index: VectorIndex, version: str, mode: RetrievalMode) -> Callable[[str], object]:
    """What /ask does for one question, for timing: encode, then one index query in the version's mode."""
    return lambda query: index.query(version, encoder.encode([query])[0], query, LATENCY_DEPTH, mode)


def choose_retrieval(
    encoder: Encoder,
    index: VectorIndex,
    version: str,
    sets: dict[str, list[Judged]],
    store: ArtifactStore,
    *,
    live: tuple[Encoder, str] | None = None,
    tie_max_drop: float = 0.0,
) -> tuple[ModeChoice, dict[str, dict[str, dict[str, Any]]]]:
    """The candidate's retrieval mode: chosen on the train split (the repeated set), checked on held-out; dense
    when the version has no BM25 vectors (its stats say why, e.g. a CJK corpus).

    The train split is scored with the live pair (`live`: encoder, index version) when its version has BM25
    vectors: the candidate has just been trained on those very questions, so its dense ranking of them is
    near perfect and says nothing about whether fusing BM25 helps questions nobody voted on. Held-out, which
    neither model learned, is scored with the candidate. Both on condensed lists (metrics.evaluate): the votes
    judged only what the dense live model showed, and the full lists would count every document BM25 brings
    up and nobody saw as a miss. A hybrid mode's held-out scores carry its per-query differences from dense
    ("vs_dense"), so a drop within noise does not veto it (gate.choose_mode, `tie_max_drop` as the gate's)."""
    if not index.has_sparse(version):
        why = stored_mode(store, version)[1] or NO_SPARSE
        return ModeChoice("dense", why), {}
    by = {"repeated": live if live and index.has_sparse(live[1]) else (encoder, version), "heldout": (encoder, version)}
    scores: dict[str, dict[str, dict[str, Any]]] = {}
    for name, (enc, ver) in by.items():
        if not sets.get(name):
            continue
        vector_of = cached_encoder(enc)
        rank = {mode: ranker(enc, index, ver, mode=mode, vector_of=vector_of) for mode in RETRIEVAL_MODES}
        scores[name] = {mode: evaluate(rank[mode], sets[name], condensed=True) for mode in RETRIEVAL_MODES}
        if name == "heldout":
            for mode in RETRIEVAL_MODES[1:]:
                paired = paired_ndcg(rank["dense"], rank[mode], sets[name], condensed=True)
                scores[name][mode]["vs_dense"] = paired.as_dict()
    train, heldout = scores.get("repeated", {}), scores.get("heldout", {})
    choice = choose_mode(train, heldout, tie_max_drop)
    return ModeChoice(choice.mode, f"{choice.reason} (train scored on {by['repeated'][1]})"), scores


def gate_metrics(
    live: Callable[[str], Sequence[str]], candidate: Callable[[str], Sequence[str]], sets: dict[str, list[Judged]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Set → before (live) / after (candidate) → P@5, hit@5, nDCG@10, on condensed lists (metrics.evaluate), as
    for the mode: the votes judged only what live showed, so full lists would count every document the
    candidate brings up and nobody saw as a miss, and favour live. A golden set holds no judged set and is
    scored on the full lists. `paired`: the per-query differences, for the gate's tie (tune/gate.py)."""
    return {
        name: {
            "before": evaluate(live, qs, condensed=True),
            "after": evaluate(candidate, qs, condensed=True),
            "paired": paired_ndcg(live, candidate, qs, condensed=True).as_dict(),
        }
        for name, qs in sets.items()
        if qs
    }


def _training_record(store: ArtifactStore, model_version: str) -> dict[str, Any]:
    """What the train step uploaded beside the model (config, counts, loss curve); {} for a model that was not
    trained by a run (bootstrap)."""
    try:
        record = json.loads(store.get_bytes(model_prefix(model_version) + "training.json"))
    except (ArtifactNotFound, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _judged(rows: list[dict[str, Any]]) -> list[Judged]:
    return [Judged(r["query"], frozenset(r["relevant"]), frozenset(r.get("judged", ()))) for r in rows]


def golden_set(store: ArtifactStore) -> list[Judged]:
    try:
        return _judged(read_jsonl(store, GOLDEN_KEY))
    except ArtifactNotFound:
        return []


def smoke(
    state: RunState,
    *,
    store: ArtifactStore,
    index: VectorIndex,
    load_encoder: Callable[[str], Encoder],
    settings: Settings,
    now: Callable[[], float],
    feedback: FeedbackStore | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> RunState:
    """The gate's evidence and decision. `now` dates the step and the memory's vote window; `timer` times the
    latency samples (tests pass fakes for both, so no outcome depends on the machine's clock or speed)."""
    started = now()
    run_id, prefix = state.run_id, state.prefix
    step_started(store, run_id, "smoke", started)
    live, candidate = state.live, state.shadow
    live_enc, cand_enc = load_encoder(live.model_version), load_encoder(candidate.model_version)
    sets = {
        "heldout": _judged(read_jsonl(store, prefix + "heldout.jsonl")),
        "repeated": _judged(read_jsonl(store, prefix + "repeated.jsonl")),
        "golden": golden_set(store),
    }
    live_mode = stored_mode(store, live.index_version)[0]
    choice, mode_scores = choose_retrieval(
        cand_enc,
        index,
        candidate.index_version,
        sets,
        store,
        live=(live_enc, live.index_version),
        tie_max_drop=settings.tune_tie_max_drop,
    )
    live_rank = ranker(live_enc, index, live.index_version, mode=live_mode)
    cand_rank = ranker(cand_enc, index, candidate.index_version, mode=choice.mode)
    metrics = gate_metrics(live_rank, cand_rank, sets)
    up, down = movers(live_rank, cand_rank, [q for qs in sets.values() for q in qs], RANK_DEPTH)
    queries = [q.query for qs in sets.values() for q in qs]
    # The ratio compares encoders and indexes, not modes: a hybrid candidate is timed against live in the same
    # mode when live's version can answer it. What a mode itself costs is the absolute budget's to bound.
    timed_live_mode = choice.mode if index.has_sparse(live.index_version) else live_mode
    latency = interleaved(
        searcher(cand_enc, index, candidate.index_version, choice.mode),
        searcher(live_enc, index, live.index_version, timed_live_mode),
        queries,
        timer=timer,
    )
    p99, samples, live_samples = latency.candidate_p99, latency.candidate, latency.live
    memory = _smoke_memory(
        feedback, sets, live_enc, cand_enc, live, candidate, index, store, settings, now(), choice.mode
    )
    decision = decide(
        GateInput(
            metrics=metrics,
            p99_ms=p99,
            margin=settings.tune_margin,
            golden_tolerance=settings.tune_golden_tolerance,
            p99_budget_ms=settings.tune_p99_budget_ms,
            live_p99_ms=latency.live_p99,
            p99_max_ratio=settings.tune_p99_ratio,
            tie_max_drop=settings.tune_tie_max_drop,
        )
    )
    stats = read_stats(store, candidate.index_version)
    write_stats(store, candidate.index_version, replace(stats, mode=choice.mode, mode_reason=choice.reason))
    report = {
        "run_id": run_id,
        "live": live.as_dict(),
        "candidate": candidate.as_dict(),
        "metrics": metrics,
        "latency_ms": {
            "candidate_p99": round(p99, 3),
            "live_p99": round(latency.live_p99, 3),
            "ratio": round(latency.ratio, 3),
            "samples": len(samples),
            "interleaved": True,
            "modes": {"candidate": choice.mode, "live": timed_live_mode},
        },
        "retrieval": {"mode": choice.mode, "reason": choice.reason, "live_mode": live_mode, "scores": mode_scores},
        "decision": {"passed": decision.passed, "reasons": decision.reasons, "notes": decision.notes},
        "thresholds": {
            "metric": METRIC,
            "margin": settings.tune_margin,
            "golden_tolerance": settings.tune_golden_tolerance,
            "tie_max_drop": settings.tune_tie_max_drop,
            "p99_budget_ms": settings.tune_p99_budget_ms,
            "p99_ratio": settings.tune_p99_ratio,
        },
        "counts": state.counts.to_event(),
        "training": _training_record(store, candidate.model_version),
        "movers": {"up": [m.__dict__ for m in up], "down": [m.__dict__ for m in down], "depth": RANK_DEPTH},
        "memory": memory,
    }
    store.put_bytes(prefix + "report.json", json.dumps(report, indent=2).encode(), "application/json")
    page = report_mod.html(report, {"live": live_samples, "candidate": samples})
    store.put_bytes(prefix + report_mod.REPORT_HTML, page.encode(), "text/html")
    status = "PASSED" if decision.passed else "REJECTED"
    _step(
        store, run_id, "smoke", started, now, metrics=metrics, latency_ms=report["latency_ms"], gate=report["decision"]
    )
    deltas = {
        name: round(m["after"][METRIC] - m["before"][METRIC], 4) for name, m in metrics.items() if m["after"]["n"]
    }
    return state.evolve(status=status, reasons=decision.reasons, deltas=deltas, candidate_p99_ms=round(p99, 3))


def _smoke_memory(
    feedback: FeedbackStore | None,
    sets: dict[str, list[Judged]],
    live_enc: Encoder,
    cand_enc: Encoder,
    live: VersionPair,
    candidate: VersionPair,
    index: VectorIndex,
    store: ArtifactStore,
    settings: Settings,
    now: float,
    mode: RetrievalMode = "dense",
) -> dict[str, Any]:
    """Live and candidate with and without the feedback memory; its threshold and weight chosen on the train
    split and checked on held-out (vote steering too, in the candidate's retrieval mode); the candidate's memory
    (voted queries re-encoded with it, and the steering) shipped beside the model as
    models/<candidate>/memory.npz. The manifest names the model, so the swap moves encoder, index and memory
    together."""
    if feedback is None:
        return {"votes": 0, "reasons": ["no feedback store given to the smoke step"]}
    since = oldest_vote(now, settings.memory_max_age_days)
    votes = feedback.votes(since, limit=10**9)[-settings.memory_max_votes :]
    section, snapshot = evaluate_memory(
        votes,
        sets,
        live=(live_enc, live.index_version),
        candidate=(cand_enc, candidate.index_version),
        index=index,
        params=MemoryParams.from_settings(settings),
        heldout_fraction=settings.tune_heldout_fraction,
        depth=settings.memory_depth,
        mode=mode,
    )
    if snapshot is not None:
        store.put_bytes(memory_key(candidate.model_version), snapshot)
    return section


# ---------------------------------------------------------------- swap


def swap_step(
    state: RunState,
    *,
    store: ArtifactStore,
    index: VectorIndex,
    settings: Settings,
    now: Callable[[], float],
) -> RunState:
    started = now()
    run_id = state.run_id
    step_started(store, run_id, "swap", started)
    candidate = state.shadow
    stats = read_stats(store, candidate.index_version)
    try:
        swap(
            store,
            candidate,
            expected_etag=state.live_etag,
            reason=f"tune {run_id}",
            documents=stats.documents,
            chunks=stats.chunks,
            keep=settings.tune_retention,
            clock=now,
        )
    except ConflictError as exc:
        raise ManifestConflict(str(exc)) from exc
    index.publish(candidate.index_version)
    removed = collect_garbage(store, index)
    _step(store, run_id, "swap", started, now, status="SWAPPED", finished_at=now(), garbage_collected=removed)
    release_lock(store, run_id)
    return state.evolve(status="SWAPPED")


def collect_garbage(store: ArtifactStore, index: VectorIndex) -> list[str]:
    """Delete model and index versions that the manifest no longer names and that are older than live.
    Newer ones may belong to a run or an ingest in progress, so they are left alone."""
    found = read_manifest(store)
    if found is None:
        return []
    manifest = found[0]
    keep = manifest.named_versions
    live_model = int(manifest.live.model_version[1:])
    live_gen = corpus_generation(manifest.live.index_version)
    removed: list[str] = []
    for v in index.versions():
        if v not in keep and int(v.split("-")[0][1:]) <= live_model and corpus_generation(v) <= live_gen:
            index.delete(v)
            store.delete_prefix(f"corpus/{v}/")
            removed.append(v)
    for m in model_versions(store):
        if m not in keep and int(m[1:]) < live_model:
            store.delete_prefix(model_prefix(m))
            removed.append(m)
    return removed


# ---------------------------------------------------------------- cleanup (Catch and Reject)


def cleanup(event: CleanupEvent, *, store: ArtifactStore, index: VectorIndex, now: Callable[[], float]) -> RunOutcome:
    """Remove what this run made (never what the manifest names), record the outcome, release the lock."""
    run = event.run
    run_id = run.run_id if run else event.run_id
    status: Literal["FAILED", "REJECTED"] = "FAILED"
    if run is not None and run.status == "REJECTED" and event.error is None:
        status, reason = "REJECTED", "; ".join(run.reasons or ()) or "smoke gate rejected the candidate"
    else:
        reason = _failure(store, run_id, event.error, now)
    outcome = _close_run(store, index, run_id, run.candidate if run else None, status, reason, now)
    release_lock(store, run_id)
    return outcome


def _failure(store: ArtifactStore, run_id: str, error: StepError | None, now: Callable[[], float]) -> str:
    """The failed run's one-line reason, from the Catch's error, the run record and the last progress."""
    try:
        record = read_run(store, run_id)
    except (ArtifactNotFound, ValueError):
        record = {}
    caught = error.to_event() if error else {}
    return failure_reason(caught, record, read_progress(store, run_id), now())[:2000]


def _close_run(
    store: ArtifactStore,
    index: VectorIndex,
    run_id: str,
    candidate: VersionPair | None,
    status: Literal["FAILED", "REJECTED"],
    reason: str,
    now: Callable[[], float],
) -> RunOutcome:
    """Remove the run's shadow index and model (unless the manifest names them) and record how it ended. The
    lock is the caller's: Cleanup releases it, a run reaping another keeps it."""
    removed: list[str] = []
    if candidate is not None:
        found = read_manifest(store)
        named = found[0].named_versions if found else set()
        if candidate.index_version not in named:
            index.delete(candidate.index_version)
            store.delete_prefix(f"corpus/{candidate.index_version}/")
            removed.append(candidate.index_version)
        if candidate.model_version not in named:
            store.delete_prefix(model_prefix(candidate.model_version))
            removed.append(candidate.model_version)
    update_run(store, run_id, status=status, reason=reason, finished_at=now(), removed=removed)
    # The embed fan-out's shards and parts go after the run is marked ended: a map item still running (a
    # failed Map does not stop its Lambdas) either wrote its part before this, or reads the end and removes it.
    store.delete_prefix(fanout_prefix(run_id))
    return RunOutcome(run_id=run_id, status=status, reason=reason, removed=tuple(removed))


def progress_logger(step: str, every_pct: int = 10) -> Callable[[int, int], None]:
    """Structured progress lines (every_pct apart) for long steps: visible in CloudWatch and locally."""
    from ..observability import logger

    last = [-1]

    def log(done: int, total: int) -> None:
        bucket = done * 100 // max(total, 1) // every_pct
        if bucket != last[0]:
            last[0] = bucket
            logger.info(f"{step} progress", extra={"done": done, "total": total})

    return log
