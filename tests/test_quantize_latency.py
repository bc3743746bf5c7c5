"""INT8 quantization, latency measurement and Table 4 on a tiny exported model."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from fasflow.export import export_trained, open_session, read_metadata
from fasflow.models import load_trained
from fasflow.latency import measure, summarize, table4_rows, thread_settings, write_table4
from fasflow.quantize import calibration_indices, quantize_trained
from conftest import model_paths
from onnx_models import FACE_SIZE, MARGIN, make_model_dir

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A trained-model folder, val/test face caches and the test manifest, all tiny."""
    root = tmp_path_factory.mktemp("results")
    model_dir = make_model_dir(root / "models" / "S0")
    rng = np.random.default_rng(0)
    # Smooth blobs rather than white noise: closer to faces, so calibration ranges are meaningful.
    base = rng.integers(0, 256, size=(60, 5, 5, 3)).astype(np.uint8)
    faces = np.kron(base, np.ones((1, 8, 8, 1), dtype=np.uint8))
    assert faces.shape[1:] == (FACE_SIZE, FACE_SIZE, 3)
    np.save(root / "val.npy", faces[:30])
    np.save(root / "test.npy", faces[30:])
    labels = np.array([0, 1, 1] * 10)
    pl.DataFrame({"label": labels, "spoof_type": np.where(labels == 1, 1 + np.arange(30) % 3, 0)}).write_parquet(
        root / "test.parquet"
    )
    report = export_trained(
        "S0", *model_paths(model_dir), root / "onnx" / "S0.onnx", root / "onnx" / "S0.json", root / "test.npy", MARGIN, FACE_SIZE
    )
    int8 = quantize_trained(
        "S0",
        root / "onnx" / "S0.onnx",
        root / "onnx" / "S0.int8.onnx",
        root / "onnx" / "S0.int8.json",
        root / "val.npy",
        root / "test.npy",
        root / "test.parquet",
        calibration_size=16,
    )
    return root, model_dir, report, int8


def test_export_report_records_parity_on_every_test_face(workspace):
    root, _, report, _ = workspace
    assert report["parity"]["n_faces"] == 30 and report["parity"]["passed"]
    assert json.loads((root / "onnx" / "S0.json").read_text())["onnx"]["opset"] == 17


def test_int8_model_runs_and_agrees_with_fp32(workspace):
    root, _, _, int8 = workspace
    path = root / "onnx" / "S0.int8.onnx"
    session = open_session(path, threads=1)
    assert any("QuantizeLinear" in node.op_type for node in __import__("onnx").load(str(path)).graph.node)
    out = session.run(None, {"input": np.zeros((3, 3, 32, 32), np.float32)})[0]
    assert out.shape == (3, 2) and np.isfinite(out).all()
    test = int8["test"]
    assert test["n_faces"] == 30
    assert test["label_agreement"] >= 0.8
    for precision in ("fp32", "int8"):
        assert set(test[precision]) >= {"apcer", "bpcer", "acer"}
        assert test[precision]["acer"] == pytest.approx((test[precision]["apcer"] + test[precision]["bpcer"]) / 2)
    # The INT8 file keeps the preprocessing metadata, so `fasflow predict` can use it too.
    meta = read_metadata(path)
    assert meta["precision"] == "int8-static-qdq" and int(meta["face_size"]) == FACE_SIZE
    assert int8["onnx"]["size_bytes"] < (root / "onnx" / "S0.onnx").stat().st_size


def test_calibration_indices_are_spread_and_bounded():
    picked = calibration_indices(10, 3).tolist()
    assert len(picked) == 3 and picked[0] == 0 and picked[-1] == 9 and picked == sorted(picked)
    assert calibration_indices(4, 100).tolist() == [0, 1, 2, 3]


def test_summary_statistics():
    stats = summarize(np.arange(1, 101, dtype=float))
    assert stats["runs"] == 100 and stats["mean_ms"] == pytest.approx(50.5)
    assert stats["median_ms"] == pytest.approx(50.5)
    assert stats["p90_ms"] == pytest.approx(90.1) and stats["p95_ms"] == pytest.approx(95.05)
    assert thread_settings(1) == [1] and thread_settings(8) == [1, 8]


def test_latency_and_table4(workspace, tmp_path):
    root, model_dir, _, _ = workspace
    model, _ = load_trained(*model_paths(model_dir))
    result = measure(root / "onnx" / "S0.onnx", model, 32, [1], warmup=2, runs=5, int8_path=root / "onnx" / "S0.int8.onnx")
    res = result["results"]["1"]
    for engine in ("onnx_fp32", "onnx_int8", "torch_eager"):
        assert res[engine]["runs"] == 5
        assert 0 < res[engine]["min_ms"] <= res[engine]["median_ms"] <= res[engine]["p95_ms"]
    assert result["system"]["cpu_model"] and result["system"]["onnxruntime"]
    (tmp_path / "S0.latency.json").write_text(json.dumps(result))
    rows = table4_rows(
        ["S0"], {"S0": root / "onnx" / "S0.json"}, {"S0": tmp_path / "S0.latency.json"}, {"S0": root / "onnx" / "S0.int8.json"}
    )
    write_table4(rows, tmp_path / "t4.csv", tmp_path / "t4.md")
    table = pl.read_csv(tmp_path / "t4.csv")
    assert table["model"].to_list() == ["S0"]
    assert table["parameters_m"][0] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
    assert table["fp32_mean_ms_1t"][0] == pytest.approx(res["onnx_fp32"]["mean_ms"], rel=1e-5)
    md = (tmp_path / "t4.md").read_text()
    assert "| S0 |" in md and "ONNX size (MiB)" in md and "INT8 mean / median ms (1 thread)" in md
