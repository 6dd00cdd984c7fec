"""The embed fan-out's files, shared by the nightly tune (tune/fanout.py) and a large ingest (ingest_fanout.py):
chunk shards (JSON lines), the item list a Distributed Map reads, and the vector parts (.npy) its items write.

Everything lives under one prefix per fan-out (runs/<id>/fanout/ for a tune, jobs/<id>/fanout/ for an ingest),
so one `delete_prefix` removes it whatever step failed. An item is S3 keys and a count, never chunk text.
A part is accepted only with exactly its shard's number of rows (`read_part`), and a plan is accepted only
with every part present (`missing`): a version is complete or absent."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .domain import Chunk
from .errors import RagError
from .ports import ArtifactStore, Vectors
from .settings import Settings


class ShardsIncomplete(RagError):
    """A shard without its vector part (a map item failed and the Map still ended), or a part that does
    not fit its shard."""

    code = "shards_incomplete"


def shard_chunks(settings: Settings) -> int:
    """Chunks per map item: what one embed function encodes in the target seconds at the measured rate."""
    return max(1, int(settings.tune_embed_chunks_per_s * settings.tune_embed_item_s))


def write_shards(
    store: ArtifactStore, prefix: str, chunks: Iterable[Chunk], size: int, *, part_suffix: str = ".npy"
) -> tuple[str, list[dict[str, Any]]]:
    """Shards of `size` chunks under prefix/shards/ and the item list (prefix/items.json) naming each one's
    part under prefix/parts/ (a vector array, or a done marker when items write into a server: ".done").
    One shard in memory at a time. Returns (the item list's key, the items)."""
    items: list[dict[str, Any]] = []
    stream = iter(chunks)
    for n, part in enumerate(iter(lambda: list(itertools.islice(stream, size)), [])):
        item: dict[str, Any] = {
            "index": n,
            "shard": f"{prefix}shards/{n:05d}.jsonl",
            "part": f"{prefix}parts/{n:05d}{part_suffix}",
            "chunks": len(part),
        }
        write_chunks(store, item["shard"], part)
        items.append(item)
    key = prefix + "items.json"
    store.put_bytes(key, json.dumps(items).encode(), "application/json")
    return key, items


def write_chunks(store: ArtifactStore, key: str, chunks: Iterable[Chunk]) -> None:
    rows = "".join(json.dumps(dataclasses.asdict(c)) + "\n" for c in chunks)
    store.put_bytes(key, rows.encode(), "application/x-ndjson")


def read_items(store: ArtifactStore, key: str) -> list[dict[str, Any]]:
    return list(json.loads(store.get_bytes(key)))


def read_chunks(store: ArtifactStore, key: str) -> list[Chunk]:
    return [Chunk(**json.loads(line)) for line in store.get_bytes(key).decode().splitlines() if line]


def read_shard(store: ArtifactStore, key: str, expected: int) -> list[Chunk]:
    chunks = read_chunks(store, key)
    if len(chunks) != expected:
        raise ShardsIncomplete(f"shard {key} holds {len(chunks)} chunks, the plan says {expected}")
    return chunks


def write_part(store: ArtifactStore, key: str, rows: Sequence[Vectors], dim: int) -> None:
    vectors = np.concatenate(rows) if rows else np.zeros((0, dim), np.float32)
    buf = io.BytesIO()
    np.save(buf, vectors.astype(np.float32), allow_pickle=False)
    store.put_bytes(key, buf.getvalue())


def read_part(store: ArtifactStore, key: str, rows: int, dim: int | None = None) -> Vectors:
    try:
        vectors = np.load(io.BytesIO(store.get_bytes(key)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ShardsIncomplete(f"part {key} is not a vector array: {exc}") from exc
    if vectors.ndim != 2 or vectors.shape[0] != rows or (dim is not None and vectors.shape[1] != dim):
        raise ShardsIncomplete(f"part {key} has shape {vectors.shape}, expected ({rows}, {dim})")
    return np.asarray(vectors, dtype=np.float32)


def written(store: ArtifactStore, prefix: str) -> set[str]:
    """The vector parts written so far under a fan-out's prefix."""
    return set(store.list_keys(prefix + "parts/"))


def require_parts(store: ArtifactStore, prefix: str, items: Sequence[dict[str, Any]]) -> None:
    """ShardsIncomplete unless every item has its part (and there is at least one item)."""
    parts = written(store, prefix)
    absent = [i["index"] for i in items if i["part"] not in parts]
    if absent or not items:
        raise ShardsIncomplete(f"{len(absent)} of {len(items)} shard(s) have no vector part: {absent[:10]}")
