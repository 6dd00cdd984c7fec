"""The tune's embed step, fanned out: Plan writes the live corpus as chunk shards and an item list to S3, a
Distributed Map runs `embed_shard` on each item (one Lambda per shard, up to the template's EmbedConcurrency
at once), and Assemble builds the candidate's index version from the vector parts.

The shard, item list and part files are embed_parts.py's, which a large ingest's fan-out (ingest_fanout.py)
shares: the ingest state machine runs this same Map, and `embed_shard` hands its items to ingest_fanout.

What crosses the Map is S3 keys (the item list's elements are `ShardItem`s), never chunk text, so no state
comes near Step Functions' payload limit whatever the corpus size. Everything the fan-out writes lives under
runs/<id>/fanout/: Assemble deletes it once the version is complete, and Cleanup (`steps._close_run`) deletes
it with the candidate when the run fails.

A version is complete or absent: Assemble checks that every shard has its part (moto's Distributed Map lets an
item fail and the Map succeed, see README) and raises `ShardsIncomplete` before it builds anything; the index
adapters write the version's `info.json` (or seal the collection) last, and remove it all when the build
fails. Point ids are the chunks' positions in the plan, so a retried Assemble writes the same points."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence

from .. import embed_parts
from ..domain import Chunk
from ..embed_parts import ShardsIncomplete as ShardsIncomplete  # re-exported: tests and faults name it here
from ..embed_parts import shard_chunks as shard_chunks
from ..errors import ArtifactNotFound
from ..ingest import embed_batches, write_version
from ..ingest_fanout import IngestJob, embed_item
from ..ports import ArtifactStore, Encoder, VectorIndex, Vectors
from ..settings import Settings
from .runs import TERMINAL, ProgressWriter, read_run, record_step, step_started
from .state import Fanout, RunState, ShardItem, ShardTask

STEP = "embed"  # the run record's name for the whole fan-out, from Plan to Assemble


def fanout_prefix(run_id: str) -> str:
    return f"runs/{run_id}/fanout/"


# ---------------------------------------------------------------- plan


def plan(
    state: RunState, *, store: ArtifactStore, index: VectorIndex, settings: Settings, now: Callable[[], float]
) -> RunState:
    """Write the live corpus as shards of `shard_chunks` chunks and the item list the Map reads."""
    started = now()
    step_started(store, state.run_id, STEP, started)
    items_key, written = embed_parts.write_shards(
        store, fanout_prefix(state.run_id), index.chunks(state.live.index_version), shard_chunks(settings)
    )
    items = [ShardItem.from_event(i) for i in written]
    chunks = sum(i.chunks for i in items)
    ProgressWriter(store, state.run_id, STEP, "chunk", now)(0, chunks)
    fanout = Fanout(items=items_key, shards=len(items), chunks=chunks, started_at=started)
    return state.evolve(fanout=fanout)


def _items(store: ArtifactStore, fanout: Fanout) -> list[ShardItem]:
    return [ShardItem.from_event(i) for i in json.loads(store.get_bytes(fanout.items))]


def _chunks_done(store: ArtifactStore, items: Sequence[ShardItem], run_id: str) -> int:
    parts = embed_parts.written(store, fanout_prefix(run_id))
    return sum(i.chunks for i in items if i.part in parts)


# ---------------------------------------------------------------- one map item


def embed_shard(
    task: ShardTask,
    *,
    store: ArtifactStore,
    load_encoder: Callable[[str], Encoder],
    now: Callable[[], float],
) -> dict[str, int | str]:
    """Embed one shard into its vector part: with the candidate encoder for a tune run, with the live one for
    an ingest job (ingest_fanout.py; the same Map and item contract). A tune's progress is the run's chunks in
    finished parts plus this shard's, so concurrent items each report a lower bound that only grows."""
    run, item = task.run, task.item
    if isinstance(run, IngestJob):
        return embed_item(run, item.shard, item.part, item.chunks, store=store, load_encoder=load_encoder)
    fanout = run.planned
    items = _items(store, fanout)
    chunks = embed_parts.read_shard(store, item.shard, item.chunks)
    encoder = load_encoder(run.shadow.model_version)
    writer = ProgressWriter(store, run.run_id, STEP, "chunk", now)
    before = _chunks_done(store, items, run.run_id)
    rows = [vectors for _, vectors in embed_batches(chunks, encoder, lambda d, _t: writer(before + d, fanout.chunks))]
    embed_parts.write_part(store, item.part, rows, encoder.dim)
    if _run_ended(store, run.run_id):  # Cleanup ran while this item was embedding: leave nothing behind
        store.delete_prefix(item.part)
    else:
        writer(_chunks_done(store, items, run.run_id), fanout.chunks)
    return {"shard": item.index, "chunks": len(chunks)}


def _run_ended(store: ArtifactStore, run_id: str) -> bool:
    try:
        return read_run(store, run_id).get("status") in TERMINAL
    except (ArtifactNotFound, ValueError):
        return False


# ---------------------------------------------------------------- assemble


def assemble(
    state: RunState,
    *,
    store: ArtifactStore,
    index: VectorIndex,
    now: Callable[[], float],
) -> RunState:
    """The candidate's index version from every shard's part, in plan order; then the fan-out's files go."""
    fanout = state.planned
    items = _items(store, fanout)
    embed_parts.require_parts(store, fanout_prefix(state.run_id), [i.to_event() for i in items])
    dim = int(embed_parts.read_part(store, items[0].part, items[0].chunks).shape[1])
    shards = [embed_parts.read_shard(store, i.shard, i.chunks) for i in items]

    def batches() -> Iterator[tuple[Sequence[Chunk], Vectors]]:
        for item, chunks in zip(items, shards, strict=True):
            yield chunks, embed_parts.read_part(store, item.part, item.chunks, dim)

    every = [c for chunks in shards for c in chunks]
    n = write_version(state.shadow.index_version, dim, batches(), every, index, store)
    store.delete_prefix(fanout_prefix(state.run_id))
    record_step(store, state.run_id, STEP, round(now() - fanout.started_at, 2), shards=fanout.shards)
    return state.evolve(embedded=n)


def embed(
    state: RunState,
    *,
    store: ArtifactStore,
    index: VectorIndex,
    load_encoder: Callable[[str], Encoder],
    now: Callable[[], float],
    settings: Settings | None = None,
) -> RunState:
    """Plan, every item one after the other, Assemble: the fan-out in one process (tests, benches)."""
    planned = plan(state, store=store, index=index, settings=settings or Settings(), now=now)
    for item in _items(store, planned.planned):
        embed_shard(ShardTask(run=planned, item=item), store=store, load_encoder=load_encoder, now=now)
    return assemble(planned, store=store, index=index, now=now)
