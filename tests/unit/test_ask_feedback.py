import json
from pathlib import Path

import pytest

from rag_autotune.ask import ask, ask_stream, citations_from_hits
from rag_autotune.domain import Chunk, Hit, VersionPair
from rag_autotune.errors import DocNotCited, IngestError, NotReady, UnknownQuery
from rag_autotune.feedback import record_feedback
from rag_autotune.generate import ExtractiveGenerator, Passage, best_sentence
from rag_autotune.ingest import ingest
from rag_autotune.live import LiveState
from rag_autotune.versions import read_manifest
from tests.fakes import TOKENS, HashEncoder, MemoryArtifactStore, MemoryFeedbackStore, MemoryVectorIndex

DOCS = [
    {
        "id": "pipe.2",
        "title": "pipe(2)",
        "text": "pipe creates a pipe, a unidirectional data channel. "
        "The array pipefd is used to return two file descriptors referring to the ends of the pipe.",
    },
    {
        "id": "open.2",
        "title": "open(2)",
        "text": "The open system call opens the file specified by pathname. "
        "If the specified file does not exist, it may optionally be created by open.",
    },
    {
        "id": "malloc.3",
        "title": "malloc(3)",
        "text": "The malloc function allocates size bytes of memory and "
        "returns a pointer to the allocated memory. The free function frees the memory space.",
    },
]


def edited_corpus(world: dict) -> Path:  # type: ignore[type-arg]
    """The corpus with one document edited: an ingest of it has a chunk to embed and moves the pointer
    (an unchanged corpus builds nothing)."""
    edited = world["corpus"].parent / "edited.jsonl"
    edited.write_text(json.dumps({**DOCS[0], "text": DOCS[0]["text"] + " Edited."}))
    return Path(edited)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def world(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    store, index, fb = MemoryArtifactStore(), MemoryVectorIndex(), MemoryFeedbackStore()
    store.put_bytes("models/v0/meta.json", b"{}")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps(d) for d in DOCS))
    encoders = {"v0": HashEncoder("v0")}
    ingest(corpus, store=store, index=index, load_encoder=encoders.__getitem__)
    clock = Clock()
    live = LiveState(store, index, encoders.__getitem__, ttl_s=5, clock=clock)
    return {
        "store": store,
        "index": index,
        "fb": fb,
        "live": live,
        "clock": clock,
        "corpus": corpus,
        "encoders": encoders,
    }


def test_ingest_makes_a_consistent_live_pair(world: dict) -> None:  # type: ignore[type-arg]
    manifest, _ = read_manifest(world["store"])  # type: ignore[misc]
    assert manifest.live == VersionPair("v0", "v0-c1")
    assert (manifest.documents, manifest.chunks) == (3, 3)
    assert world["index"].count("v0-c1") == 3


def test_ask_cites_one_chunk_per_document_in_rank_order_and_logs_it(world: dict) -> None:  # type: ignore[type-arg]
    answer = ask(
        "how do I create a pipe with two file descriptors",
        2,
        world["live"].current(),
        TOKENS,
        ExtractiveGenerator(),
    )
    assert answer.pair == VersionPair("v0", "v0-c1")
    assert [c.rank for c in answer.citations] == [1, 2]
    assert answer.citations[0].doc_id == "pipe.2"
    assert "[1]" in answer.answer
    shown = TOKENS.read(answer.query_id)  # the id is the signed record of what was shown
    assert shown.query.startswith("how do I create") and shown.query_id == answer.log_id
    assert [(c.doc_id, c.chunk_id, c.rank) for c in shown.citations] == [
        (c.doc_id, c.chunk_id, c.rank) for c in answer.citations
    ]
    assert answer.timings.total_ms >= answer.timings.encode_ms


def test_stream_carries_a_signed_query_id(world: dict) -> None:  # type: ignore[type-arg]
    retrieval, deltas = ask_stream("allocate memory", 3, world["live"].current(), TOKENS, ExtractiveGenerator())
    assert TOKENS.read(retrieval.query_id).query == "allocate memory"
    assert "malloc" in "".join(deltas)


def test_citations_dedupe_documents() -> None:
    c = lambda i, d: Chunk(f"{d}#{i}", d, d, f"text {i}")  # noqa: E731
    hits = [Hit(c(0, "a"), 0.9), Hit(c(1, "a"), 0.8), Hit(c(0, "b"), 0.7), Hit(c(0, "c"), 0.6)]
    cites = citations_from_hits("q", hits, 2)
    assert [(x.doc_id, x.chunk_id, x.rank) for x in cites] == [("a", "a#0", 1), ("b", "b#0", 2)]


def test_feedback_rules(world: dict) -> None:  # type: ignore[type-arg]
    fb, clock = world["fb"], world["clock"]
    answer = ask("open a file", 2, world["live"].current(), TOKENS, ExtractiveGenerator())
    cited = answer.citations[0].doc_id
    kw = dict(user_id=None, client_id="ip-1", comment=None, window_s=3600, now=clock)
    with pytest.raises(UnknownQuery):
        record_feedback(fb, TOKENS, query_id="nope", doc_id=cited, vote="up", **kw)
    with pytest.raises(DocNotCited):
        record_feedback(fb, TOKENS, query_id=answer.query_id, doc_id="not-shown", vote="up", **kw)
    assert record_feedback(fb, TOKENS, query_id=answer.query_id, doc_id=cited, vote="up", **kw) is True
    clock.t += 60
    assert record_feedback(fb, TOKENS, query_id=answer.query_id, doc_id=cited, vote="up", **kw) is False
    assert record_feedback(fb, TOKENS, query_id=answer.query_id, doc_id=cited, vote="down", **kw) is True
    kw_user = {**kw, "user_id": "alice"}
    assert record_feedback(fb, TOKENS, query_id=answer.query_id, doc_id=cited, vote="up", **kw_user) is True
    clock.t += 3601
    assert record_feedback(fb, TOKENS, query_id=answer.query_id, doc_id=cited, vote="up", **kw) is True
    vote = fb.votes()[0]
    assert (vote.query, vote.rank, vote.pair.model_version, vote.chunk_id) == (
        "open a file",
        1,
        "v0",
        answer.citations[0].chunk_id,
    )


def test_live_state_rechecks_at_most_every_ttl_and_hot_loads(world: dict) -> None:  # type: ignore[type-arg]
    live, clock = world["live"], world["clock"]
    first = live.current()
    world["encoders"]["v0"] = HashEncoder("v0")
    # a re-ingest that changes a document moves the pointer; within the TTL the old pair keeps serving,
    # after it the new one
    ingest(
        edited_corpus(world),
        store=world["store"],
        index=world["index"],
        load_encoder=world["encoders"].__getitem__,
        replace=True,
    )
    assert live.current() is first
    clock.t += 5
    second = live.current()
    assert second.pair.index_version == "v0-c2" and second is not first


def test_not_ready_without_manifest() -> None:
    live = LiveState(MemoryArtifactStore(), MemoryVectorIndex(), lambda v: HashEncoder(v))
    with pytest.raises(NotReady):
        live.current()


def test_strict_ingest_refuses_malformed_input_and_leaves_live_alone(world: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "text": "ok"}) + "\n{broken\n")
    before = read_manifest(world["store"])
    with pytest.raises(IngestError, match="line 2") as caught:
        ingest(bad, store=world["store"], index=world["index"], load_encoder=world["encoders"].__getitem__, strict=True)
    assert "\n" not in str(caught.value)  # the CLI prints it as one line
    assert read_manifest(world["store"]) == before
    assert world["index"].versions() == ["v0-c1"]


def test_ingest_failure_midway_leaves_nothing(world: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    class Broken(HashEncoder):
        def encode(self, texts):  # type: ignore[no-untyped-def]
            raise RuntimeError("encoder died")

    before = read_manifest(world["store"])
    with pytest.raises(RuntimeError):
        ingest(edited_corpus(world), store=world["store"], index=world["index"], load_encoder=lambda v: Broken(v))
    assert read_manifest(world["store"]) == before
    assert world["index"].versions() == ["v0-c1"]
    assert not world["store"].list_keys("corpus/v0-c2")


def test_merge_ingest_keeps_other_docs_and_replace_drops_them(world: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "new.7", "title": "new(7)", "text": "A new page."}))
    load = world["encoders"].__getitem__
    report = ingest(extra, store=world["store"], index=world["index"], load_encoder=load)
    assert report.documents == 4
    report = ingest(
        extra, store=world["store"], index=world["index"], load_encoder=load, replace=True, clock=lambda: 0.0
    )
    assert report.documents == 1
    assert read_manifest(world["store"])[0].updated_at == "1970-01-01T00:00:00+00:00"  # type: ignore[index]


def test_extractive_answer_picks_the_matching_sentence() -> None:
    text = "Unrelated intro sentence. The pipe has a read end and a write end. Another line."
    assert best_sentence("pipe read end", text) == "The pipe has a read end and a write end."
    out = ExtractiveGenerator().answer("pipe read end", [Passage(1, "pipe(2)", text)])
    assert out == "The pipe has a read end and a write end. [1]"
    assert "nothing" in ExtractiveGenerator().answer("x", [])


def test_live_state_keeps_serving_when_the_new_pair_cannot_load(world: dict) -> None:  # type: ignore[type-arg]
    from rag_autotune.errors import CorruptArtifact

    live, clock = world["live"], world["clock"]
    first = live.current()

    def broken(version: str) -> HashEncoder:
        raise CorruptArtifact("model.onnx does not match its sha256")

    live._load_encoder = broken
    live._loaded.clear()
    ingest(
        edited_corpus(world),
        store=world["store"],
        index=world["index"],
        load_encoder=world["encoders"].__getitem__,
        replace=True,
    )
    clock.t += 5
    assert live.current() is first  # still the old, whole pair
    assert live.degraded is not None and "sha256" in live.degraded  # /health reports this
    good = world["encoders"].__getitem__
    live._load_encoder = good
    clock.t += 5
    assert live.current() is first  # the same broken manifest is not re-downloaded on every TTL
    clock.t += 60
    recovered = live.current()
    assert recovered is not first and recovered.pair.index_version == "v0-c2" and live.degraded is None


def test_health_says_degraded_while_the_last_good_pair_serves(world: dict) -> None:  # type: ignore[type-arg]
    from types import SimpleNamespace

    from rag_autotune import http_api
    from rag_autotune.errors import CorruptArtifact

    live, clock = world["live"], world["clock"]
    live.current()
    rt = SimpleNamespace(live=live)
    assert json.loads(http_api.health(rt).body)["status"] == "ok"  # type: ignore[arg-type]

    def broken(version: str) -> HashEncoder:
        raise CorruptArtifact("models/v0/model.onnx: cannot load ONNX model: truncated")

    live._load_encoder = broken
    live._loaded.clear()
    ingest(edited_corpus(world), store=world["store"], index=world["index"], load_encoder=world["encoders"].__getitem__)
    clock.t += 5
    reply = http_api.health(rt)  # type: ignore[arg-type]
    body = json.loads(reply.body)
    assert reply.status == 200 and body["status"] == "degraded" and "truncated" in body["reason"]
    assert body["index_version"] == "v0-c1"  # what actually answers
