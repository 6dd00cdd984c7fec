"""What Prepare trains on: exactly the texts the index embeds, and hard negatives mined from the live ranking."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from rag_autotune.domain import VersionPair, Vote
from rag_autotune.ingest import ingest
from rag_autotune.ports import Vectors
from rag_autotune.settings import Settings
from rag_autotune.tune import steps
from rag_autotune.tune.dataset import QueryVotes, mine_negatives, split, triplets
from rag_autotune.tune.state import RunStart
from tests.fakes import HashEncoder, MemoryArtifactStore, MemoryFeedbackStore, MemoryVectorIndex

LIVE = VersionPair("v0", "v0-c1")
# Titles that are not in the text: a trainer fed the bare text would see other strings than the index.
DOCS = [
    ("pipe.2", "pipe(2)", "create a pipe channel with two file descriptors"),
    ("pipe2.2", "pipe2(2)", "create a pipe channel with flags and two descriptors"),
    ("open.2", "open(2)", "open and possibly create a file by pathname"),
    ("malloc.3", "malloc(3)", "allocate and free dynamic memory"),
    ("signal.7", "signal(7)", "overview of signals and their default actions"),
]


class RecordingEncoder(HashEncoder):
    """Remembers every text it was asked to embed: what the index holds vectors of."""

    def __init__(self, seen: set[str]) -> None:
        super().__init__("v0")
        self.seen = seen

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.seen.update(texts)
        return super().encode(texts)


@pytest.fixture
def world(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    store, index, fb = MemoryArtifactStore(), MemoryVectorIndex(), MemoryFeedbackStore()
    store.put_bytes("models/v0/meta.json", b"{}")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"id": i, "title": t, "text": x}) for i, t, x in DOCS))
    embedded: set[str] = set()
    ingest(corpus, store=store, index=index, load_encoder=lambda v: RecordingEncoder(embedded))
    return {"store": store, "index": index, "fb": fb, "embedded": embedded}


def _ask_and_vote(w: dict, q: str, t: float, up: str, down: str) -> None:  # type: ignore[type-arg]
    for kind, doc in (("up", up), ("down", down)):  # as /feedback records them: no query vector
        vote = Vote(f"q{t}", doc, f"{doc}#0", kind, 1, q, LIVE, t)  # type: ignore[arg-type]
        w["fb"].record_vote(vote, f"{kind}{t}", 3600)
        t += 0.1


def _prepare(w: dict, **settings: object) -> list[dict]:  # type: ignore[type-arg]
    for i, (q, up, down) in enumerate(
        [
            ("make a pipe", "pipe.2", "signal.7"),
            ("open a file by pathname", "open.2", "malloc.3"),
            ("create a pipe", "pipe2.2", "malloc.3"),
            ("signals overview", "signal.7", "open.2"),
        ]
    ):
        _ask_and_vote(w, q, 10.0 + i, up, down)
    s = Settings(tune_min_feedback=3, tune_heldout_fraction=0.0, **settings)  # type: ignore[arg-type]
    state = steps.prepare(
        RunStart(run_id="r1"),
        store=w["store"],
        feedback=w["fb"],
        index=w["index"],
        settings=s,
        now=lambda: 99.0,
        load_encoder=HashEncoder,  # the live model: mining encodes the questions
    )
    assert state.status == "RUNNING"
    return steps.read_jsonl(w["store"], "runs/r1/train.jsonl")


def test_training_texts_are_exactly_what_the_index_embeds(world: dict) -> None:  # type: ignore[type-arg]
    rows = _prepare(world)
    assert rows
    trained = {r["positive"] for r in rows} | {r["negative"] for r in rows}
    assert trained - world["embedded"] == set()
    assert any(r["positive"].startswith("pipe(2)\n") for r in rows)  # the title is in, as the index has it


def test_mined_negatives_rank_above_an_up_chunk_and_were_never_voted_up() -> None:
    g = QueryVotes("make a pipe", up={"pipe.2": "pipe.2#1"}, down={"open.2": "open.2#0"})
    ranked = [
        ("open.2#0", "open.2"),  # already a 👎: not mined again
        ("pipe.2#0", "pipe.2"),  # another chunk of the 👍 document: not a negative
        ("pipe2.2#0", "pipe2.2"),
        ("open.2#3", "open.2"),  # another chunk of a 👎 document
        ("fifo.7#0", "fifo.7"),
        ("pipe.2#1", "pipe.2"),  # the 👍 chunk: nothing below it is mined
        ("signal.7#0", "signal.7"),
    ]
    assert mine_negatives(g, ranked, 10) == ["pipe2.2#0", "open.2#3", "fifo.7#0"]
    assert mine_negatives(g, ranked, 2) == ["pipe2.2#0", "open.2#3"]
    assert mine_negatives(g, ranked[:3], 10) == ["pipe2.2#0"]  # the 👍 chunk ranked below the depth searched
    assert mine_negatives(QueryVotes("q", down={"a": "a#0"}), ranked, 10) == []  # no 👍: no anchor


def test_mined_negatives_become_hard_triplets_after_the_voted_ones() -> None:
    g = QueryVotes("q", up={"a": "a#0"}, down={"b": "b#0"}, voted_at={"a": 1.0, "b": 2.0}, mined=["c#0", "b#0"])
    text = {"a#0": "A", "b#0": "B", "c#0": "C"}
    rows = triplets(split({"q": g}, 0.0).train, text.get, ["R"], seed=0)
    got = [(t.positive, t.negative, t.hard, t.mined) for t in rows]
    assert got == [("A", "B", True, False), ("A", "C", True, True)]


def test_prepare_mines_from_the_live_ranking_only_when_asked(tmp_path: Path, world: dict) -> None:  # type: ignore[type-arg]
    rows = _prepare(world, tune_mined_negatives=3)
    mined = [r for r in rows if r.get("mined")]
    assert mined and all(r["hard"] for r in mined)
    doc_of = {steps.embed_text(c): c.doc_id for c in world["index"].chunks("v0-c1")}
    up = {("create a pipe", "pipe2.2"), ("make a pipe", "pipe.2"), ("open a file by pathname", "open.2")}
    for r in mined:  # a chunk the index embeds, never of a document voted 👍 for that query
        assert r["negative"] in doc_of and (r["query"], doc_of[r["negative"]]) not in up
    # The live model puts pipe(2) above the 👍 pipe2(2): nobody voted it up, so it is mined.
    assert any(r["query"] == "create a pipe" and doc_of[r["negative"]] == "pipe.2" for r in mined)


def test_prepare_mines_nothing_by_default(world: dict) -> None:  # type: ignore[type-arg]
    assert not any(r.get("mined") for r in _prepare(world))


def test_warm_up_rounds_down_so_a_short_run_starts_learning_at_once() -> None:
    from rag_autotune.training.lora import warmup_steps

    assert [warmup_steps(n, 0.1) for n in (1, 5, 9, 10, 25)] == [0, 0, 0, 1, 2]
    assert warmup_steps(7, 0.0) == 0
