"""What the tune's embed fan-out would take on AWS, projected from rates measured on this machine
(`make bench-scale`). Pure arithmetic: no timing, no AWS calls, so a unit test checks it.

The model: Plan writes ceil(chunks / shard_chunks) items; the Distributed Map runs them `max_concurrency` at a
time, each item one embed function of `memory_mb` whose encoder runs at the measured one-vCPU rate times the
vCPUs Lambda gives that memory size, plus a fixed per-item overhead (cold start, model download, S3 reads and
writes); Plan and Assemble take the measured seconds per chunk, and Assemble adds the measured HNSW build
seconds per point once the corpus reaches the index's HNSW threshold. Every assumption is a field of
`Assumptions`, and the bench prints them beside the table."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Lambda gives CPU with memory: 1,769 MB is one full vCPU, 10,240 MB (the maximum) six.
MB_PER_VCPU = 1769
MAX_VCPU = 6
MAX_MEMORY_MB = 10240
TASK_LIMIT_S = 600  # the target for every task: under 10 minutes at any size
USD_PER_GB_S = 0.0000166667  # Lambda x86, us-east-1, first pricing tier


def vcpus(memory_mb: int) -> float:
    """The CPU Lambda gives a function of `memory_mb`, in vCPUs: in proportion to memory up to one vCPU, then
    linear between the two points AWS documents (1,769 MB: 1 vCPU; 10,240 MB: 6)."""
    if not 128 <= memory_mb <= MAX_MEMORY_MB:
        raise ValueError(f"Lambda memory is 128 to {MAX_MEMORY_MB} MB, got {memory_mb}")
    if memory_mb <= MB_PER_VCPU:
        return memory_mb / MB_PER_VCPU
    return 1 + (memory_mb - MB_PER_VCPU) * (MAX_VCPU - 1) / (MAX_MEMORY_MB - MB_PER_VCPU)


@dataclass(frozen=True)
class Assumptions:
    chunks_per_s_per_vcpu: float  # measured: one local worker on one thread
    plan_s_per_chunk: float  # measured: Plan's wall time over the chunks it wrote
    assemble_s_per_chunk: float  # measured: Assemble's wall time over the chunks, below the HNSW threshold
    hnsw_s_per_point: float = 0.0  # measured: an Edge shard's HNSW build (optimize) over its points; 0 = unknown
    hnsw_threshold: int = 50_000  # EdgeVectorIndex builds HNSW from this many points on
    memory_mb: int = 3008  # template.yaml's TuneEmbedFunction
    plan_memory_mb: int = 1769  # TunePlanFunction
    assemble_memory_mb: int = 3008  # TuneAssembleFunction
    max_concurrency: int = 100  # the EmbedConcurrency parameter (the Map's MaxConcurrency)
    shard_chunks: int = 4500  # RAG_TUNE_EMBED_CHUNKS_PER_S x RAG_TUNE_EMBED_ITEM_S (25 x 180 by default)
    item_overhead_s: float = 5.0  # per map item: cold start, model download, shard read, part write


@dataclass(frozen=True)
class Projection:
    chunks: int
    items: int
    waves: int  # rounds of max_concurrency items
    item_s: float  # one full item, overhead included
    plan_s: float
    map_s: float
    assemble_s: float
    gb_s: float  # Plan + every item + Assemble

    @property
    def wall_s(self) -> float:
        return self.plan_s + self.map_s + self.assemble_s

    @property
    def usd(self) -> float:
        return self.gb_s * USD_PER_GB_S

    @property
    def longest_task_s(self) -> float:
        return max(self.plan_s, self.item_s, self.assemble_s)

    @property
    def within_limit(self) -> bool:
        return self.longest_task_s <= TASK_LIMIT_S


def project(chunks: int, a: Assumptions) -> Projection:
    """The fan-out of `chunks` chunks under `a`."""
    if chunks <= 0:
        raise ValueError("chunks must be positive")
    rate = a.chunks_per_s_per_vcpu * vcpus(a.memory_mb)
    items = math.ceil(chunks / a.shard_chunks)
    item_s = a.item_overhead_s + min(chunks, a.shard_chunks) / rate
    waves = math.ceil(items / a.max_concurrency)
    last_wave = items - (waves - 1) * a.max_concurrency
    # Every wave but the last is full items; the last one ends with the shortest item when it holds just one.
    last_item_s = a.item_overhead_s + (chunks - (items - 1) * a.shard_chunks) / rate
    map_s = (waves - 1) * item_s + (last_item_s if last_wave == 1 else item_s)
    items_s = items * a.item_overhead_s + chunks / rate  # summed over every item: what is billed
    plan_s = chunks * a.plan_s_per_chunk
    assemble_s = chunks * a.assemble_s_per_chunk
    if chunks >= a.hnsw_threshold:
        assemble_s += chunks * a.hnsw_s_per_point
    gb_s = (items_s * a.memory_mb + plan_s * a.plan_memory_mb + assemble_s * a.assemble_memory_mb) / 1024
    return Projection(chunks, items, waves, item_s, plan_s, map_s, assemble_s, gb_s)


def markdown(rows: list[Projection]) -> str:
    """The cost curve as a markdown table."""
    out = [
        "| chunks | items | waves | item | plan | map | assemble | wall | GB-s | USD | every task ≤ 10 min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in rows:
        out.append(
            f"| {p.chunks:,} | {p.items} | {p.waves} | {p.item_s:.0f} s | {p.plan_s:.0f} s | {p.map_s:.0f} s "
            f"| {p.assemble_s:.0f} s | {p.wall_s / 60:.1f} min | {p.gb_s:,.0f} | {p.usd:.3f} "
            f"| {'yes' if p.within_limit else f'no ({p.longest_task_s / 60:.0f} min)'} |"
        )
    return "\n".join(out)
