"""Hybrid retrieval end to end with the fakes: which versions get BM25 vectors, how the smoke step picks the mode
and stores it with the version, and what /ask answers with it (including questions BM25 cannot use)."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_autotune import http_api
from rag_autotune.ask import ask
from rag_autotune.domain import IndexStats
from rag_autotune.generate import ExtractiveGenerator
from rag_autotune.ingest import ingest
from rag_autotune.live import LiveState
from rag_autotune.retrieval import NO_TERMS, bm25_unusable, dense_fallback
from rag_autotune.settings import Settings
from rag_autotune.tune import fanout, steps
from rag_autotune.tune.gate import choose_mode
from rag_autotune.tune.state import RunStart
from rag_autotune.versions import read_stats, write_stats
from tests.fakes import TOKENS, HashEncoder, MemoryArtifactStore, MemoryFeedbackStore, MemoryVectorIndex, fake_runtime
from tests.unit.test_observability import log_lines  # noqa: F401 (the fixture)
from tests.unit.test_tune_logic import CLOCK, DOCS, Ticks, _log_and_vote


def _scores(**ndcg: float) -> dict[str, dict[str, Any]]:
    return {mode.replace("_", "-"): {"ndcg@10": v, "n": 4} for mode, v in ndcg.items()}


def test_the_mode_is_the_best_on_train_unless_it_lowers_held_out() -> None:
    train = _scores(dense=0.5, hybrid_rrf=0.75, hybrid_dbsf=0.625)
    assert choose_mode(train, _scores(dense=0.5, hybrid_rrf=0.5, hybrid_dbsf=0.5)).mode == "hybrid-rrf"
    lowered = choose_mode(train, _scores(dense=0.5, hybrid_rrf=0.375, hybrid_dbsf=0.75))
    assert lowered.mode == "dense" and "lowers held-out" in lowered.reason
    assert choose_mode(_scores(dense=0.5, hybrid_rrf=0.5, hybrid_dbsf=0.5), {}).mode == "dense"  # ties: dense
    assert choose_mode(_scores(dense=0.5, hybrid_rrf=0.25, hybrid_dbsf=0.75), {}).mode == "hybrid-dbsf"
    empty = {m: {"ndcg@10": 0.0, "n": 0} for m in ("dense", "hybrid-rrf", "hybrid-dbsf")}
    assert choose_mode(empty, {}).mode == "dense" and "no train queries" in choose_mode(empty, {}).reason


def test_a_held_out_drop_within_noise_does_not_veto_the_train_splits_mode() -> None:
    """Held-out judged at its ceiling by a handful of questions: a drop of 1/64 within two standard errors of the
    per-query differences is a tie, and the mode that won the train split ships; a drop beyond noise, or past
    the cap, still vetoes it."""
    train = _scores(dense=0.5, hybrid_rrf=0.5, hybrid_dbsf=0.75)

    def held(se: float, drop: float = 1 / 64) -> dict[str, dict[str, Any]]:
        out = _scores(dense=0.9375, hybrid_rrf=0.9375, hybrid_dbsf=0.9375 - drop)
        out["hybrid-dbsf"]["vs_dense"] = {"n": 16, "mean": -drop, "se": se}
        return out

    tie = choose_mode(train, held(se=1 / 64), tie_max_drop=1 / 32)
    assert tie.mode == "hybrid-dbsf" and "a tie within noise" in tie.reason
    assert choose_mode(train, held(se=1 / 256), tie_max_drop=1 / 32).mode == "dense"  # 4 standard errors
    assert choose_mode(train, held(se=1 / 16, drop=1 / 16), tie_max_drop=1 / 32).mode == "dense"  # past the cap
    assert choose_mode(train, held(se=1 / 64)).mode == "dense"  # no cap given: every drop vetoes, as before


def test_bm25_is_unusable_on_text_written_without_spaces() -> None:
    assert bm25_unusable(["How do I open a file?", "malloc(3) allocates memory"]) == ""
    assert "without spaces" in bm25_unusable(["文件描述符如何打开", "管道是单向的数据通道"])
    assert "without spaces" in bm25_unusable(["ファイルを開く方法", "open(2)"])  # a few Latin letters do not save it
    assert bm25_unusable(["파일을 여는 방법"]) == ""  # Hangul is written with spaces
    assert bm25_unusable(["The pipe(2) call, 管道"]) == ""  # mostly Latin
    assert "no letters" in bm25_unusable(["12 34 !?"])
    assert dense_fallback("dense", False, 0) == "" and dense_fallback("hybrid-rrf", True, 2) == ""
    assert dense_fallback("hybrid-dbsf", True, 0) == NO_TERMS


def test_a_cjk_corpus_is_indexed_dense_with_the_reason_logged(
    tmp_path: Path,
    log_lines: Callable[[], list[dict]],  # type: ignore[type-arg]  # noqa: F811
) -> None:
    store, index = MemoryArtifactStore(), MemoryVectorIndex()
    store.put_bytes("models/v0/meta.json", b"{}")
    corpus = tmp_path / "zh.jsonl"
    rows = [
        {"id": "a", "title": "管道", "text": "管道是单向的数据通道。"},
        {"id": "b", "title": "文件", "text": "打开文件。"},
    ]
    corpus.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    ingest(corpus, store=store, index=index, load_encoder=HashEncoder)
    assert not index.has_sparse("v0-c1")
    stats = read_stats(store, "v0-c1")
    assert stats.mode == "dense" and "without spaces" in stats.mode_reason
    logged = [e for e in log_lines() if e["message"].startswith("BM25 cannot rank this corpus")]
    assert logged and "without spaces" in logged[0]["reason"]
    found = index.query("v0-c1", HashEncoder().encode(["管道"])[0], "管道", 2, "hybrid-rrf")
    assert found.mode == "dense" and len(found.hits) == 2


@pytest.mark.parametrize("learned", [False, True], ids=["candidate-flat", "candidate-learned"])
def test_smoke_picks_hybrid_when_dense_cannot_rank_and_ask_answers_with_it(tmp_path: Path, learned: bool) -> None:
    """Models whose dense vectors rank nothing (every query the same vector): BM25 carries the train split
    (scored with the live model, which has not learned those questions) and held-out (with the candidate), so
    the smoke step picks a hybrid mode, writes it into the version's stats, and /ask then answers hybrid,
    except for a question made only of stop words, which the dense side answers. `learned`: the candidate ranks
    the train questions well by dense alone (as one trained on their votes does), and still does not decide."""

    class Flat(HashEncoder):
        def encode(self, texts: Any) -> Any:
            out = np.zeros((len(texts), self.dim), dtype=np.float32)
            out[:, 0] = 1.0
            return out

    store, index, fb = MemoryArtifactStore(), MemoryVectorIndex(), MemoryFeedbackStore()
    store.put_bytes("models/v0/meta.json", b"{}")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"id": i, "title": i, "text": t}) for i, t in DOCS))
    ingest(corpus, store=store, index=index, load_encoder=HashEncoder)
    assert read_stats(store, "v0-c1").mode == "hybrid-dbsf"  # a first version's default (domain.FIRST_MODE)
    write_stats(store, "v0-c1", IndexStats(4, 4, "dense"))  # live as a run that chose dense left it
    questions = ["create a pipe channel", "open a file by pathname", "allocate dynamic memory", "overview of signals"]
    for n in range(3):
        for i, q in enumerate(questions):
            _log_and_vote(fb, f"{q} {'again ' * n}", DOCS[i][0], DOCS[(i + 1) % 4][0], 10.0 + 10 * n + i)
    settings = Settings(tune_min_feedback=3, tune_heldout_fraction=0.5, tune_margin=-1.0, tune_golden_tolerance=1.0)
    kw: dict[str, Any] = {"store": store, "index": index}
    state = steps.prepare(RunStart(run_id="r1", trigger="test"), feedback=fb, settings=settings, now=CLOCK, **kw)
    store.put_bytes("models/v1/meta.json", b"{}")
    # v0-c1 was indexed by HashEncoder, so flat queries rank nothing there
    encoders = {"v0": Flat("v0"), "v1": HashEncoder("v1") if learned else Flat("v1")}
    state = fanout.embed(state, load_encoder=encoders.__getitem__, now=CLOCK, **kw)
    assert read_stats(store, "v1-c1").mode == "dense"  # until the smoke step chooses
    state = steps.smoke(state, load_encoder=encoders.__getitem__, settings=settings, now=CLOCK, timer=Ticks(1e-3), **kw)
    full = json.loads(store.get_bytes("runs/r1/report.json"))
    report = full["retrieval"]
    assert report["mode"] in ("hybrid-rrf", "hybrid-dbsf"), report
    assert report["reason"].endswith("(train scored on v0-c1)")
    # live answers dense, but the latency ratio times it in the candidate's mode: it compares models, not modes
    assert (report["live_mode"], full["latency_ms"]["modes"]["live"]) == ("dense", report["mode"])
    train = report["scores"]["repeated"]
    assert train[report["mode"]]["ndcg@10"] > train["dense"]["ndcg@10"]
    stats = read_stats(store, "v1-c1")
    assert (stats.mode, stats.mode_reason) == (report["mode"], report["reason"]) and stats.chunks == 4
    assert state.status == "PASSED", state.reasons
    steps.swap_step(state, settings=settings, now=CLOCK, **kw)

    live = LiveState(store, index, encoders.__getitem__, ttl_s=0).current()
    assert live.mode == report["mode"]
    answer = ask("how do I allocate dynamic memory", 2, live, TOKENS, ExtractiveGenerator())
    assert answer.mode == report["mode"] and answer.citations[0].doc_id == "malloc.3"
    for text in ("what is the", "?!…", "the of and"):
        plain = ask(text, 2, live, TOKENS, ExtractiveGenerator())
        assert plain.mode == "dense" and len(plain.citations) == 2


def test_old_versions_without_a_mode_answer_dense(tmp_path: Path) -> None:
    rt = fake_runtime(tmp_path, {"id": "pipe.2", "title": "pipe(2)", "text": "pipe creates a data channel"})
    store = rt.store
    store.put_bytes("corpus/v0-c1/stats.json", json.dumps({"documents": 1, "chunks": 1}).encode())  # as written before
    assert read_stats(store, "v0-c1") == IndexStats(1, 1, "dense", "")
    write_stats(store, "v0-c1", IndexStats(1, 1, "hybrid-rrf", "chosen"))
    assert read_stats(store, "v0-c1").mode == "hybrid-rrf"


def test_the_ask_response_says_which_mode_answered(tmp_path: Path) -> None:
    rt = fake_runtime(tmp_path, {"id": "pipe.2", "title": "pipe(2)", "text": "pipe creates a data channel"})
    write_stats(rt.store, "v0-c1", IndexStats(1, 1, "hybrid-dbsf", "chosen"))
    guard = http_api.Guard.from_settings(rt.settings, clock=lambda: 0.0)
    for query, mode in (("what creates a pipe channel", "hybrid-dbsf"), ("the of what", "dense")):
        body = json.dumps({"query": query, "top_k": 1}).encode()
        resp = http_api.ask(rt, http_api.HttpRequest(body, {}, "203.0.113.9"), guard)
        assert resp.status == 200, resp.body
        answered = json.loads(resp.body)
        assert answered["retrieval_mode"] == mode and answered["citations"][0]["doc_id"] == "pipe.2"
