"""The memory in /ask with fakes: votes re-rank at once, the version tie after a swap, shipped and damaged
snapshots, the off switch."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rag_autotune.ask import ask
from rag_autotune.domain import VersionPair
from rag_autotune.generate import ExtractiveGenerator
from rag_autotune.ingest import build_version
from rag_autotune.live import LiveState
from rag_autotune.memory import VoteMemory, dump_snapshot, memory_key
from rag_autotune.runtime import Runtime
from rag_autotune.settings import Settings
from rag_autotune.versions import read_manifest, read_stats, swap
from tests.fakes import TOKENS, HashEncoder
from tests.unit.memory.support import DOCS, T0, P, ask_as, log_vote, mv, vec, vote_on


def test_votes_rerank_at_once_and_citations_say_boosted(world: dict[str, Any]) -> None:
    q = "a data channel between processes"
    first = ask_as(world, q)
    assert not any(c.boosted for c in first.citations)
    top = first.citations[0].doc_id
    for voter in ("u1", "u2"):  # two users say the top document is wrong
        vote_on(world["fb"], first.query_id, top, "down", user_id=voter)
    world["wall"].t = T0 + 2
    again = ask_as(world, q, top_k=len(DOCS))  # every document is cited: the demoted one is surely among them
    assert again.citations[0].doc_id != top  # its replacement surfaced
    (moved,) = [c for c in again.citations if c.doc_id == top]
    assert moved.boosted and moved.rank > 1 and moved.score < first.citations[0].score
    assert [c.score for c in again.citations] == sorted((c.score for c in again.citations), reverse=True)
    assert not ask_as(world, "allocate bytes of memory").citations[0].boosted  # unrelated queries untouched


def test_version_tie_after_swap_no_old_memory_with_the_new_encoder(world: dict[str, Any]) -> None:
    w = world
    first = ask_as(w, "create a pipe with two file descriptors")
    vote_on(w["fb"], first.query_id, first.citations[1].doc_id, "up")
    w["wall"].t = T0 + 2
    before = w["live"].current()
    assert before.memory is not None and before.memory.maybe_refresh() == 1  # as the next /ask would
    assert before.memory is not None and before.memory.model_version == "v0" and len(before.memory.memory) == 1

    # The tune run's candidate: encoder v1 (another dimension, so mixing would fail loudly) and its index.
    manifest, etag = read_manifest(w["store"])  # type: ignore[misc]
    chunks = list(w["index"].chunks(manifest.live.index_version))
    build_version("v1-c1", chunks, w["encoders"]["v1"], w["index"], w["store"])
    stats = read_stats(w["store"], "v1-c1")
    swap(
        w["store"],
        VersionPair("v1", "v1-c1"),
        expected_etag=etag,
        reason="tune",
        documents=stats.documents,
        chunks=stats.chunks,
    )

    after = w["live"].current()
    assert after.pair.model_version == "v1"
    assert after.memory is not None and after.memory.model_version == "v1" and after.memory.memory.dim == 32
    assert after.memory is not before.memory and len(after.memory.memory) == 1  # the vote, re-encoded with v1
    assert after.memory.encoded == 1
    again = ask_as(w, "create a pipe with two file descriptors")
    assert again.pair.model_version == "v1" and any(c.boosted for c in again.citations)


def test_shipped_snapshot_is_loaded_with_its_tuned_values(world: dict[str, Any]) -> None:
    snap = VoteMemory("v0", 64, replace(P, threshold=0.98, weight=0.5), epoch=T0)
    snap.add(mv("create a pipe", "fifo.7", voter="z", t=T0 - 100), vec("create a pipe"))
    world["store"].put_bytes(memory_key("v0"), dump_snapshot(snap, as_of=T0 - 100))
    mem = world["live"].current().memory
    assert mem.memory.params.threshold == 0.98 and mem.memory.params.weight == 0.5
    assert mem.memory.params.max_penalty == P.max_penalty and len(mem.memory) == 1


def test_a_damaged_snapshot_falls_back_to_the_vote_log(world: dict[str, Any]) -> None:
    log_vote(world["fb"], "create a pipe", "fifo.7", "up", T0 - 50)
    world["store"].put_bytes(memory_key("v0"), b"not an npz")
    mem = world["live"].current().memory
    assert mem is not None and len(mem.memory) == 1 and mem.memory.params.threshold == P.threshold


def test_off_switch(world: dict[str, Any]) -> None:
    assert Runtime(Settings(memory_enabled=False)).load_memory(HashEncoder("v0")) is None
    q = "a data channel between processes"
    first = ask_as(world, q)
    for voter in ("u1", "u2"):
        vote_on(world["fb"], first.query_id, first.citations[0].doc_id, "down", user_id=voter)
    off = LiveState(world["store"], world["index"], world["encoders"].__getitem__, ttl_s=0)  # no memory loader
    plain = ask(q, 3, off.current(), TOKENS, ExtractiveGenerator())
    assert off.current().memory is None
    assert [c.doc_id for c in plain.citations] == [c.doc_id for c in first.citations]
    assert not any(c.boosted for c in plain.citations)
    # A memory the gate shipped disabled is off too.
    live = world["live"].current()
    live.memory.memory.params = replace(live.memory.memory.params, enabled=False)
    assert [c.doc_id for c in ask_as(world, q).citations] == [c.doc_id for c in first.citations]
