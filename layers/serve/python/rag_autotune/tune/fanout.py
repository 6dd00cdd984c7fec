"""The tune's embed step, fanned out: Plan writes the live corpus as chunk shards and an item list to S3, a
Distributed Map runs `embed_shard` on each item (one Lambda per shard, up to the template's EmbedConcurrency
at once), and Assemble builds the candidate's index version from the vector parts.

The shard, item list and part files are embed_parts.py's, which a large ingest's fan-out (ingest_fanout.py)
shares: the ingest state machine runs this same Map, and `embed_shard` hands its items to ingest_fanout.

Direct writes: when the index takes parts (ports.PartWriter: a Qdrant server or cluster, never Edge, whose
version is one file one process builds), Plan begins the candidate version unsealed, each item writes its
points straight into it and a small done marker as its part, and Assemble only checks and seals. Nothing
then carries vectors through S3 or holds the whole corpus in one function.

What crosses the Map is S3 keys (the item list's elements are `ShardItem`s), never chunk text, so no state
comes near Step Functions' payload limit whatever the corpus size. Everything the fan-out writes lives under
runs/<id>/fanout/: Assemble deletes it once the version is complete, and Cleanup (`steps._close_run`) deletes
it with the candidate when the run fails.

A version is complete or absent: Assemble checks that every shard has its part (moto's Distributed Map lets an
item fail and the Map succeed, see README) and raises `ShardsIncomplete` before it builds anything; the index
adapters write the version's `info.json` (or seal the collection) last, and remove it all when the build
fails; an unsealed collection is Cleanup's to delete, like any candidate. Point ids are the chunks' positions
in the plan, so a retried Assemble, or a retried direct item, writes the same points again, never more."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence

from .. import embed_parts
from ..chunking import embed_text
from ..domain import Chunk, IndexStats
from ..embed_parts import ShardsIncomplete as ShardsIncomplete  # re-exported: tests and faults name it here
from ..embed_parts import shard_chunks as shard_chunks
from ..errors import ArtifactNotFound, IncompleteVersion
from ..ingest import embed_batches, write_version
from ..ingest_fanout import IngestJob, embed_item
from ..ports import ArtifactStore, Encoder, VectorIndex, Vectors, part_writer
from ..retrieval import Bm25Check
from ..settings import Settings
from ..versions import write_stats
from .runs import TERMINAL, ProgressWriter, read_run, record_step, step_started
from .state import DirectWrites, Fanout, RunState, ShardItem, ShardTask

STEP = "embed"  # the run record's name for the whole fan-out, from Plan to Assemble


def fanout_prefix(run_id: str) -> str:
    return f"runs/{run_id}/fanout/"


# ---------------------------------------------------------------- plan


def plan(
    state: RunState,
    *,
    store: ArtifactStore,
    index: VectorIndex,
    settings: Settings,
    now: Callable[[], float],
    load_encoder: Callable[[str], Encoder] | None = None,
) -> RunState:
    """Write the live corpus as shards of `shard_chunks` chunks and the item list the Map reads. When the index
    takes parts (a server), begin the candidate version there too: its dim is the candidate encoder's."""
    started = now()
    step_started(store, state.run_id, STEP, started)
    writer = part_writer(index)
    docs: set[str] = set()
    bm25 = Bm25Check()

    def tapped(stream: Iterable[Chunk]) -> Iterator[Chunk]:
        """The corpus, streamed once: BM25's check and the document count read it on the way. Only direct
        writes need them here; with vector parts, Assemble's build runs the same check."""
        for chunk in stream:
            docs.add(chunk.doc_id)
            bm25.add(embed_text(chunk))
            yield chunk

    corpus = index.chunks(state.live.index_version)
    items_key, written = embed_parts.write_shards(
        store,
        fanout_prefix(state.run_id),
        tapped(corpus) if writer is not None else corpus,
        shard_chunks(settings),
        part_suffix=".done" if writer else ".npy",
    )
    items = [ShardItem.from_event(i) for i in written]
    chunks = sum(i.chunks for i in items)
    dense_only = ""
    if writer is not None:
        dense_only = bm25.reason() if items else ""  # an empty corpus is not one BM25 cannot rank
        if load_encoder is None:
            raise TypeError("plan needs load_encoder when the index takes parts")
        dim = load_encoder(state.shadow.model_version).dim
        writer.begin(state.shadow.index_version, dim, sparse=not dense_only)
    ProgressWriter(store, state.run_id, STEP, "chunk", now)(0, chunks)
    fanout = Fanout(
        items=items_key,
        shards=len(items),
        chunks=chunks,
        started_at=started,
        direct=DirectWrites(docs=len(docs), dense_only=dense_only) if writer is not None else None,
    )
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
    index: VectorIndex | None = None,
) -> dict[str, int | str]:
    """Embed one shard into its vector part (or, direct, into the candidate version at its plan positions, then
    its done marker): with the candidate encoder for a tune run, with the live one for an ingest job
    (ingest_fanout.py; the same Map and item contract). A tune's progress is the run's chunks in finished parts
    plus this shard's, so concurrent items each report a lower bound that only grows."""
    run, item = task.run, task.item
    if isinstance(run, IngestJob):
        return embed_item(run, item.shard, item.part, item.chunks, store=store, load_encoder=load_encoder)
    fanout = run.planned
    items = _items(store, fanout)
    chunks = embed_parts.read_shard(store, item.shard, item.chunks)
    encoder = load_encoder(run.shadow.model_version)
    writer = ProgressWriter(store, run.run_id, STEP, "chunk", now)
    before = _chunks_done(store, items, run.run_id)
    batches = embed_batches(chunks, encoder, lambda d, _t: writer(before + d, fanout.chunks))
    if fanout.direct:
        target = part_writer(index) if index is not None else None
        if target is None:
            raise TypeError("the plan writes into the index: embed_shard needs an index that takes parts")
        offset = sum(i.chunks for i in items if i.index < item.index)  # the shard's first plan position
        done = 0
        for part, vectors in batches:
            done += target.write_part(run.shadow.index_version, offset + done, part, vectors)
        store.put_bytes(item.part, json.dumps({"points": done}).encode(), "application/json")
    else:
        embed_parts.write_part(store, item.part, [vectors for _, vectors in batches], encoder.dim)
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
    """The candidate's index version from every shard's part, in plan order (or, direct, sealed once it holds
    the plan's every chunk); then the fan-out's files go."""
    fanout = state.planned
    items = _items(store, fanout)
    embed_parts.require_parts(store, fanout_prefix(state.run_id), [i.to_event() for i in items])
    direct = fanout.direct
    n = _build(state, store, index, items) if direct is None else _seal(state, store, index, items, direct)
    store.delete_prefix(fanout_prefix(state.run_id))
    record_step(store, state.run_id, STEP, round(now() - fanout.started_at, 2), shards=fanout.shards)
    return state.evolve(embedded=n)


def _build(state: RunState, store: ArtifactStore, index: VectorIndex, items: Sequence[ShardItem]) -> int:
    dim = int(embed_parts.read_part(store, items[0].part, items[0].chunks).shape[1])
    shards = [embed_parts.read_shard(store, i.shard, i.chunks) for i in items]

    def batches() -> Iterator[tuple[Sequence[Chunk], Vectors]]:
        for item, chunks in zip(items, shards, strict=True):
            yield chunks, embed_parts.read_part(store, item.part, item.chunks, dim)

    every = [c for chunks in shards for c in chunks]
    return write_version(state.shadow.index_version, dim, batches(), every, index, store)


def _seal(
    state: RunState, store: ArtifactStore, index: VectorIndex, items: Sequence[ShardItem], direct: DirectWrites
) -> int:
    """Seal the version the items wrote into, when every marker and the point count agree with the plan. What
    fails here stays for Cleanup to delete (an UpstreamError is retried: it must find the points still there)."""
    fanout, version = state.planned, state.shadow.index_version
    writer = part_writer(index)
    if writer is None:
        raise TypeError("the plan wrote into the index, and this index does not take parts")
    short = [i.index for i in items if _marker(store, i) != i.chunks]
    if short:
        raise ShardsIncomplete(f"{len(short)} of {len(items)} shard(s) have a wrong done marker: {short[:10]}")
    if version in index.versions():  # sealed by an earlier attempt whose stats write failed
        n = index.count(version)
    else:
        try:
            n = writer.seal(version, fanout.chunks)
        except IncompleteVersion as exc:
            raise ShardsIncomplete(str(exc)) from exc
    write_stats(store, version, IndexStats(direct.docs, n, "dense", direct.dense_only))
    return n


def _marker(store: ArtifactStore, item: ShardItem) -> int | None:
    """The points a direct item says it wrote, None when its marker is not one."""
    try:
        return int(json.loads(store.get_bytes(item.part))["points"])
    except (ValueError, KeyError, TypeError):
        return None


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
    planned = plan(state, store=store, index=index, settings=settings or Settings(), now=now, load_encoder=load_encoder)
    for item in _items(store, planned.planned):
        task = ShardTask(run=planned, item=item)
        embed_shard(task, store=store, load_encoder=load_encoder, now=now, index=index)
    return assemble(planned, store=store, index=index, now=now)
