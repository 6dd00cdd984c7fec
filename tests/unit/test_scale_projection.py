"""scripts/scale_projection.py and scripts/svg_chart.py: the arithmetic of bench-scale's AWS projection and its
plot (logic only; the bench's timings are printed, never asserted)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


sp = _load("scale_projection")
svg = _load("svg_chart")

# 10 chunks/s per vCPU on a 1769 MB function (one vCPU): an item of 100 chunks encodes in 10 s, plus 2 s.
A = sp.Assumptions(
    chunks_per_s_per_vcpu=10.0,
    plan_s_per_chunk=0.01,
    assemble_s_per_chunk=0.02,
    hnsw_s_per_point=0.1,
    hnsw_threshold=1000,
    memory_mb=1769,
    plan_memory_mb=1024,
    assemble_memory_mb=2048,
    max_concurrency=4,
    shard_chunks=100,
    item_overhead_s=2.0,
)


def test_vcpus_follow_memory_up_to_six() -> None:
    assert sp.vcpus(1769) == 1.0
    assert sp.vcpus(1769 // 2) == pytest.approx(0.5, abs=1e-3)
    assert sp.vcpus(10240) == 6.0  # not 10240 / 1769 (5.79): AWS documents 6 at the largest size
    assert 1.7 < sp.vcpus(3008) < 1.8
    with pytest.raises(ValueError):
        sp.vcpus(20000)


def test_items_run_in_waves_of_max_concurrency() -> None:
    p = sp.project(950, A)  # 10 items: 9 of 100 chunks and one of 50; waves of 4, 4, 2
    assert (p.items, p.waves) == (10, 3)
    assert p.item_s == pytest.approx(12.0)
    assert p.map_s == pytest.approx(3 * 12.0)  # the last wave holds two items, one of them full
    assert p.plan_s == pytest.approx(9.5)
    assert p.assemble_s == pytest.approx(19.0)  # below the HNSW threshold: no graph
    billed = 10 * 2.0 + 950 / 10.0  # every item's overhead plus the encoding
    assert p.gb_s == pytest.approx((billed * 1769 + 9.5 * 1024 + 19.0 * 2048) / 1024)
    assert p.wall_s == pytest.approx(9.5 + 36.0 + 19.0)
    assert p.within_limit


def test_a_lone_last_item_ends_the_map_early() -> None:
    p = sp.project(450, A)  # 5 items: one wave of 4 full ones, then one of 50 chunks alone
    assert (p.items, p.waves) == (5, 2)
    assert p.map_s == pytest.approx(12.0 + 2.0 + 5.0)


def test_more_vcpus_encode_faster_and_hnsw_counts_from_its_threshold() -> None:
    big = sp.project(1000, dataclasses.replace(A, memory_mb=10240))
    assert big.item_s == pytest.approx(2.0 + 100 / 60.0)
    assert big.assemble_s == pytest.approx(1000 * (0.02 + 0.1))


def test_a_task_over_ten_minutes_is_flagged() -> None:
    p = sp.project(100_000, A)  # Assemble: 100k x 0.12 s
    assert not p.within_limit
    assert p.longest_task_s == pytest.approx(12_000)
    assert "no (200 min)" in sp.markdown([p])


def test_the_chart_is_well_formed_svg_with_one_line_per_series() -> None:
    chart = svg.line_chart("t", "x", "y", {"a": [(1e3, 1.0), (1e6, 50.0)], "b & c": [(1e3, 2.0), (1e5, 3.0)]})
    root = ET.fromstring(svg.side_by_side([chart, chart]))
    lines = root.findall(".//{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 4
    with pytest.raises(ValueError):
        svg.line_chart("t", "x", "y", {"a": [(0.0, 1.0)]})
