"""ONNX export: one self-contained checked file, metadata, and parity with PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from fasflow.errors import DataError
from conftest import model_paths

from fasflow.export import check_onnx, open_session, parity, preprocessed_batches, read_metadata
from fasflow.models import load_trained
from onnx_models import FACE_SIZE, INPUT_SIZE, MARGIN, export_tiny, make_model_dir

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = make_model_dir(tmp_path_factory.mktemp("models") / "S0")
    model, summary = load_trained(*model_paths(folder))
    path = tmp_path_factory.mktemp("onnx") / "S0.onnx"
    info = export_tiny(model, path)
    return model, path, info


def test_export_writes_one_checked_file_with_dynamic_batch(exported):
    model, path, info = exported
    assert sorted(p.name for p in path.parent.iterdir()) == ["S0.onnx"]  # no .data file, no temp file
    check_onnx(path)
    assert info["opset"] == 17
    assert info["external_data"] is False
    assert info["dynamic_batch"] is True
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["size_mib"] == pytest.approx(path.stat().st_size / 2**20)
    assert info["size_mb"] == pytest.approx(path.stat().st_size / 1e6)
    # Constant folding merges BatchNorm into the convolutions: fewer values than parameters.
    assert info["stored_values"] < info["parameters"]


def test_export_without_folding_keeps_batchnorm(exported, tmp_path):
    model, _, folded = exported
    info = export_tiny(model, tmp_path / "unfolded.onnx", fold_constants=False)
    assert info["stored_values"] > info["parameters"]  # BatchNorm weights plus running statistics
    assert info["size_bytes"] > folded["size_bytes"]


def test_export_records_preprocessing_metadata(exported):
    _, path, _ = exported
    meta = read_metadata(path)
    assert int(meta["input_size"]) == INPUT_SIZE
    assert float(meta["face_margin"]) == MARGIN
    assert int(meta["face_size"]) == FACE_SIZE
    assert meta["classes"] == '["live", "spoof"]'


def test_parity_with_pytorch_on_faces(exported):
    model, path, _ = exported
    faces = np.random.default_rng(0).integers(0, 256, size=(24, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
    with torch.inference_mode():
        logits = model(torch.from_numpy(next(preprocessed_batches(faces, INPUT_SIZE, 24)))).numpy()
    assert np.abs(logits).max() > 0.1  # a model that outputs zeros would make parity trivial
    result = parity(model, open_session(path, threads=1), faces, INPUT_SIZE, atol=1e-4, rtol=1e-4, batch_size=10)
    assert result["n_faces"] == 24
    assert result["max_abs_logit_diff"] <= 1e-4 * (1 + np.abs(logits).max())
    assert 0 <= result["fp32_vs_fp64_max_abs_diff"] < 1e-3
    assert result["labels_identical"] and result["within_tolerance"] and result["passed"]


def test_parity_detects_a_different_model(exported, tmp_path):
    model, _, _ = exported
    other = make_model_dir(tmp_path / "other", seed=1)
    other_model, _ = load_trained(*model_paths(other))
    path = tmp_path / "other.onnx"
    export_tiny(other_model, path)
    faces = np.random.default_rng(1).integers(0, 256, size=(8, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
    result = parity(model, open_session(path, threads=1), faces, INPUT_SIZE)
    assert result["max_abs_logit_diff"] > 1e-4
    assert not result["passed"]


def test_checker_rejects_a_broken_model(tmp_path):
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [], [])  # x and y are not declared
    path = tmp_path / "broken.onnx"
    onnx.save(onnx.helper.make_model(graph), str(path))
    with pytest.raises(DataError, match="broken.onnx"):
        check_onnx(path)


def test_load_trained_names_the_missing_key(tmp_path):
    folder = make_model_dir(tmp_path / "S1")
    (folder / "summary.json").write_text('{"arch": "mobilenetv2_100"}')
    with pytest.raises(DataError, match=r"summary\.json.*dropout"):
        load_trained(*model_paths(folder))
