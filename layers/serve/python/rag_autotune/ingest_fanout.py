"""A large ingest, fanned out: the chunks it must embed go through the same Distributed Map as the nightly
tune's embed step (the same embed function, the same item contract), in the ingest state machine
(infra/ingest.asl.json): EmbedShards → AssembleIngest, any failure → CleanupIngest → Fail.

The caller (the CLI, or the ingest function) has done everything but the embedding: it merged the change,
found the vectors it can reuse from the live version (same text, same model) and claimed the new version's
name. `FanoutRunner.run` writes the new version's chunk list and the chunks to embed as shards under
jobs/<id>/, starts the execution with the job (`IngestJob`) as `$.run`, and waits for it. Assemble builds the
version from the parts and the live version's vectors, then makes the one conditional manifest write exactly
as an in-process ingest does (ingest.commit); a moved pointer fails the execution with PointerMoved, which
the runner raises again, so the caller's conflict path is the same either way.

Nothing half-written: Assemble refuses a plan with a part missing, deletes its version when the build or the
swap fails, and deletes jobs/<id>/ when it is done; Cleanup deletes the version (unless it went live) and
jobs/<id>/ whatever failed. An item still embedding when Cleanup ran sees its job gone and deletes its part."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import embed_parts
from .chunking import embed_hash
from .domain import Chunk, RetrievalMode
from .errors import IngestError, UpstreamError
from .ingest import CLAIMS, PointerMoved, Target, commit, discard, embed_batches, vector_batches
from .ports import ArtifactStore, Encoder, VectorIndex, Vectors, Workflows
from .versions import read_manifest

JOBS = "jobs/"


def job_prefix(job_id: str) -> str:
    return f"{JOBS}{job_id}/"


class JobFanout(BaseModel):
    """The chunks to embed: the item list the Map reads, its shards, and the chunks over all of them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: str
    shards: int
    chunks: int


class IngestJob(BaseModel):
    """The ingest execution's `$.run`: what every step of it reads. A map item reads it beside its ShardItem."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = Field(min_length=1)
    model_version: str  # the live model: an ingest embeds with the encoder that serves
    live: str | None  # the live index version the change was applied to (reused vectors come from it)
    live_etag: str | None  # the manifest's ETag then: the swap expects it
    version: str  # the new index version, claimed (ingest.claim_version)
    mode: RetrievalMode
    source: str
    documents: int
    keep: int
    chunks: str  # key of the new version's chunks, in order (JSON lines)
    fanout: JobFanout  # `$.run.fanout.items` is where the Map's ItemReader looks, in the tune as here

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Self:
        try:
            return cls.model_validate(event)
        except ValidationError as exc:
            raise IngestError(f"not an ingest job: {exc}") from exc

    def to_event(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def target(self) -> Target:
        return Target(
            self.model_version,
            self.live,
            self.live_etag,
            self.version,
            self.mode,
            self.source,
            self.documents,
            self.keep,
        )


def plan_job(
    job_id: str, chunks: Sequence[Chunk], todo: Sequence[Chunk], target: Target, *, store: ArtifactStore, size: int
) -> IngestJob:
    """Write the version's chunk list and the chunks to embed as shards of `size` under jobs/<id>/."""
    prefix = job_prefix(job_id)
    chunks_key = prefix + "chunks.jsonl"
    embed_parts.write_chunks(store, chunks_key, chunks)
    items_key, items = embed_parts.write_shards(store, prefix + "fanout/", todo, size)
    return IngestJob(
        job_id=job_id,
        model_version=target.model,
        live=target.live,
        live_etag=target.etag,
        version=target.version,
        mode=target.mode,
        source=target.source,
        documents=target.documents,
        keep=target.keep,
        chunks=chunks_key,
        fanout=JobFanout(items=items_key, shards=len(items), chunks=len(todo)),
    )


def embed_item(
    job: IngestJob, shard: str, part: str, rows: int, *, store: ArtifactStore, load_encoder: Callable[[str], Encoder]
) -> dict[str, int | str]:
    """One map item of an ingest: its shard embedded by the live model into its part."""
    chunks = embed_parts.read_shard(store, shard, rows)
    encoder = load_encoder(job.model_version)
    embed_parts.write_part(store, part, [v for _, v in embed_batches(chunks, encoder)], encoder.dim)
    if store.head_etag(job.chunks) is None:  # Cleanup ran while this item was embedding: leave nothing behind
        store.delete_prefix(part)
    return {"shard": shard, "chunks": len(chunks)}


def assemble_job(
    job: IngestJob, *, store: ArtifactStore, index: VectorIndex, clock: Callable[[], float] = time.time
) -> dict[str, Any]:
    """The new version from the parts (new vectors) and the live version (reused ones), in the chunk list's
    order; then the conditional manifest write, and jobs/<id>/ goes."""
    prefix = job_prefix(job.job_id)
    items = embed_parts.read_items(store, job.fanout.items)
    embed_parts.require_parts(store, prefix + "fanout/", items)
    vectors: dict[str, Vectors] = {}
    dim: int | None = None
    for item in items:
        shard = embed_parts.read_shard(store, item["shard"], item["chunks"])
        part = embed_parts.read_part(store, item["part"], item["chunks"], dim)
        dim = int(part.shape[1])
        vectors.update(zip((embed_hash(c) for c in shard), part, strict=True))
    chunks = embed_parts.read_chunks(store, job.chunks)
    wanted = {embed_hash(c) for c in chunks} - set(vectors)
    if wanted:
        if job.live is None:
            raise embed_parts.ShardsIncomplete(f"{len(wanted)} chunk(s) are neither embedded nor in a live version")
        reused = index.vectors(job.live, wanted)
        if len(reused) != len(wanted):
            raise embed_parts.ShardsIncomplete(
                f"{len(wanted) - len(reused)} chunk(s) are neither embedded nor in {job.live} any more"
            )
        vectors.update(reused)
    if dim is None:
        raise embed_parts.ShardsIncomplete("an ingest fan-out with no shard")
    n = commit(job.target, dim, vector_batches(chunks, vectors), chunks, store=store, index=index, clock=clock)
    store.delete_prefix(prefix)
    return {"index_version": job.version, "chunks": n}


def cleanup_job(
    job: IngestJob, error: Mapping[str, Any] | None, *, store: ArtifactStore, index: VectorIndex
) -> dict[str, Any]:
    """After any failure: the job's version goes (unless the pointer already names it) and so does jobs/<id>/.
    Returns what the Fail state reports: `error` PointerMoved (the ingest conflict) or IngestFailed, and
    `cause`, the failing step's error in one line. `error` is what the Catch put in $.error."""
    current = read_manifest(store)
    live = current[0].live.index_version if current else None
    if live != job.version:
        discard(job.version, index, store)
    store.delete_prefix(job_prefix(job.job_id))
    name, message = _lambda_error((error or {}).get("Error"), (error or {}).get("Cause"))
    return {
        "error": name if name == PointerMoved.__name__ else "IngestFailed",
        "cause": f"{name}: {message}" if message else name,
        "removed": job.version if live != job.version else None,
    }


class FanoutRunner:
    """ingest.FanOut through a `Workflows` port (the ingest state machine). `above`: an ingest fans out when it
    must embed more chunks than this. `wait_s`: how long `run` waits for the execution (None: until it ends);
    past it, FanoutPending (the execution goes on, and either swaps or cleans up by itself)."""

    def __init__(
        self,
        workflows: Workflows,
        store: ArtifactStore,
        *,
        size: int,
        above: int,
        wait_s: float | None = None,
        poll_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        progress: Callable[[int, int], None] | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.workflows, self.store, self.size, self.above = workflows, store, size, above
        self.wait_s, self.poll_s, self.sleep, self.clock, self.progress = wait_s, poll_s, sleep, clock, progress
        self.new_id = new_id or _job_id

    def run(self, chunks: Sequence[Chunk], todo: Sequence[Chunk], target: Target) -> int:
        job = plan_job(self.new_id(), chunks, todo, target, store=self.store, size=self.size)
        try:
            execution = self.workflows.start(job.job_id, {"run": job.to_event()})
        except BaseException:
            self.store.delete_prefix(f"{CLAIMS}{job.version}/")  # nothing was built: only the claim to release
            self.store.delete_prefix(job_prefix(job.job_id))
            raise
        deadline = None if self.wait_s is None else self.clock() + self.wait_s
        while True:
            state = self.workflows.describe(execution)
            if state.status == "RUNNING":
                if self.progress:
                    self.progress(self._embedded(job), job.fanout.chunks)
                if deadline is not None and self.clock() >= deadline:
                    raise FanoutPending(f"ingest {job.job_id} is still running in {execution}")
                self.sleep(self.poll_s)
                continue
            if state.status == "SUCCEEDED":
                if self.progress:
                    self.progress(job.fanout.chunks, job.fanout.chunks)
                return int((state.output or {}).get("chunks", 0))
            if state.error == PointerMoved.__name__:
                raise PointerMoved(state.cause or "the live index moved while this ingest ran")
            raise IngestError(f"the ingest fan-out {job.job_id} failed: {state.cause or state.error}; nothing changed")

    def _embedded(self, job: IngestJob) -> int:
        items = {i["part"]: i["chunks"] for i in embed_parts.read_items(self.store, job.fanout.items)}
        parts = embed_parts.written(self.store, job_prefix(job.job_id) + "fanout/")
        return sum(n for key, n in items.items() if key in parts)


class FanoutPending(UpstreamError):
    """The fan-out's execution outlived the caller's wait. It goes on; its swap (or cleanup) is its own."""


def _job_id() -> str:
    import os

    return time.strftime("ingest-%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.urandom(3).hex()}"


def _lambda_error(error: str | None, cause: str | None) -> tuple[str, str]:
    """(name, message): a Lambda error's cause is JSON (errorType, errorMessage)."""
    import json

    try:
        parsed = json.loads(cause or "")
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "errorType" in parsed:
        return str(parsed["errorType"]), str(parsed.get("errorMessage", ""))
    return error or "Error", cause or ""
