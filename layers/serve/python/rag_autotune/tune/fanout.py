"""The tune's embed step, fanned out: Plan writes the live corpus as chunk shards and an item list to S3, a
Distributed Map runs `embed_shard` on each item (one Lambda per shard, up to the template's EmbedConcurrency
at once), and Assemble builds the candidate's index version from the vector parts.

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

import dataclasses
import io
import itertools
import json
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..chunking import embed_text
from ..domain import Chunk, IndexStats
from ..errors import ArtifactNotFound, IncompleteVersion, RagError
from ..ingest import embed_batches, write_version
from ..ports import ArtifactStore, Encoder, VectorIndex, Vectors, part_writer
from ..retrieval import bm25_unusable
from ..settings import Settings
from ..versions import write_stats
from .runs import TERMINAL, ProgressWriter, read_run, record_step, step_started
from .state import DirectWrites, Fanout, RunState, ShardItem, ShardTask

STEP = "embed"  # the run record's name for the whole fan-out, from Plan to Assemble


class ShardsIncomplete(RagError):
    """Assemble found a shard without its vector part: a map item failed and the Map still ended."""

    code = "shards_incomplete"


def fanout_prefix(run_id: str) -> str:
    return f"runs/{run_id}/fanout/"


def shard_chunks(settings: Settings) -> int:
    """Chunks per map item: what one embed function encodes in the target seconds at the measured rate."""
    return max(1, int(settings.tune_embed_chunks_per_s * settings.tune_embed_item_s))


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
    prefix = fanout_prefix(state.run_id)
    writer = part_writer(index)
    suffix = ".done" if writer else ".npy"
    items: list[ShardItem] = []
    docs: set[str] = set()
    stream, size = iter(index.chunks(state.live.index_version)), shard_chunks(settings)

    def texts() -> Iterator[str]:
        """Writes the shards, one in memory at a time, while BM25's check reads their text: one pass."""
        for n, part in enumerate(iter(lambda: list(itertools.islice(stream, size)), [])):
            item = ShardItem(
                index=n, shard=f"{prefix}shards/{n:05d}.jsonl", part=f"{prefix}parts/{n:05d}{suffix}", chunks=len(part)
            )
            rows = "\n".join(json.dumps(dataclasses.asdict(c)) for c in part) + "\n"
            store.put_bytes(item.shard, rows.encode(), "application/x-ndjson")
            items.append(item)
            docs.update(c.doc_id for c in part)
            yield from (embed_text(c) for c in part)

    dense_only = bm25_unusable(texts())
    dense_only = dense_only if items else ""  # an empty corpus is not one BM25 cannot rank
    items_key = prefix + "items.json"
    store.put_bytes(items_key, json.dumps([i.to_event() for i in items]).encode(), "application/json")
    chunks = sum(i.chunks for i in items)
    if writer is not None:
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


def _written(store: ArtifactStore, run_id: str) -> set[str]:
    """The vector parts written so far."""
    return set(store.list_keys(fanout_prefix(run_id) + "parts/"))


def _chunks_done(store: ArtifactStore, items: Sequence[ShardItem], run_id: str) -> int:
    parts = _written(store, run_id)
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
    """Embed one shard with the candidate encoder into its vector part, or (direct) into the candidate version
    at its plan positions, then its done marker. Progress is the run's chunks in finished parts plus this
    shard's, so concurrent items each report a lower bound that only grows."""
    run, item = task.run, task.item
    fanout = run.planned
    items = _items(store, fanout)
    chunks = [Chunk(**json.loads(line)) for line in store.get_bytes(item.shard).decode().splitlines() if line]
    if len(chunks) != item.chunks:
        raise ShardsIncomplete(f"shard {item.shard} holds {len(chunks)} chunks, the plan says {item.chunks}")
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
        rows = [vectors for _, vectors in batches]
        matrix = np.concatenate(rows) if rows else np.zeros((0, encoder.dim), np.float32)
        buf = io.BytesIO()
        np.save(buf, matrix.astype(np.float32), allow_pickle=False)
        store.put_bytes(item.part, buf.getvalue())
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


def _part(store: ArtifactStore, item: ShardItem, dim: int | None = None) -> Vectors:
    try:
        vectors = np.load(io.BytesIO(store.get_bytes(item.part)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ShardsIncomplete(f"part {item.part} is not a vector array: {exc}") from exc
    if vectors.ndim != 2 or vectors.shape[0] != item.chunks or (dim is not None and vectors.shape[1] != dim):
        raise ShardsIncomplete(f"part {item.part} has shape {vectors.shape}, expected ({item.chunks}, {dim})")
    return np.asarray(vectors, dtype=np.float32)


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
    parts = _written(store, state.run_id)
    missing = [i.index for i in items if i.part not in parts]
    if missing or not items:
        raise ShardsIncomplete(f"{len(missing)} of {len(items)} shard(s) have no vector part: {missing[:10]}")
    direct = fanout.direct
    n = _build(state, store, index, items) if direct is None else _seal(state, store, index, items, direct)
    store.delete_prefix(fanout_prefix(state.run_id))
    record_step(store, state.run_id, STEP, round(now() - fanout.started_at, 2), shards=fanout.shards)
    return state.evolve(embedded=n)


def _build(state: RunState, store: ArtifactStore, index: VectorIndex, items: Sequence[ShardItem]) -> int:
    dim = int(_part(store, items[0]).shape[1])
    shards = [[Chunk(**json.loads(x)) for x in store.get_bytes(i.shard).decode().splitlines() if x] for i in items]

    def batches() -> Iterator[tuple[Sequence[Chunk], Vectors]]:
        for item, chunks in zip(items, shards, strict=True):
            yield chunks, _part(store, item, dim)

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
