"""predict_split, the predict step and load_trained on a tiny untrained model and a fabricated face cache."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from conftest import model_paths
from eval_fakes import write_model_dir, write_split

from fasflow.data import load_faces
from fasflow.errors import DataError
from fasflow.models import load_trained
from fasflow.predict import predict_split
from fasflow.steps import run_predict


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_predict_split_schema_and_scores(tmp_path):
    write_model_dir(tmp_path / "models/S0", "S0")
    write_split(tmp_path, "test", 14)
    model, summary = load_trained(*model_paths(tmp_path / "models/S0"))
    assert not model.training
    faces, manifest = load_faces(tmp_path / "results/faces/test.npy", tmp_path / "results/splits/test.parquet")
    df = predict_split(model, faces, manifest, summary["input_size"], batch_size=4, device="cpu")
    assert df.columns == ["path", "subject_id", "label", "spoof_type", "score", "pred"]
    assert df["path"].to_list() == manifest["path"].to_list()  # row i = image i
    scores = df["score"].to_numpy()
    assert np.all((scores >= 0) & (scores <= 1))
    assert (df["pred"].to_numpy() == (scores >= 0.5)).all()
    # same model, same images, other batch size: same scores (eval mode, no augmentation)
    again = predict_split(model, faces, manifest, summary["input_size"], batch_size=7, device="cpu")
    assert np.allclose(again["score"].to_numpy(), scores, atol=1e-5)


def test_run_predict_writes_both_splits(tmp_path):
    write_model_dir(tmp_path / "models/S0", "S0")
    write_split(tmp_path, "val", 6, seed=1)
    write_split(tmp_path, "test", 9, seed=2)
    r = tmp_path / "results"
    weights, summary = model_paths(tmp_path / "models/S0")
    run_predict(
        weights=str(weights), summary=str(summary),
        val_faces=r / "faces/val.npy", val_manifest=r / "splits/val.parquet",
        test_faces=r / "faces/test.npy", test_manifest=r / "splits/test.parquet",
        val=r / "predictions/val/S0.parquet", test=r / "predictions/S0.parquet",
        batch_size=4, device="cpu",
    )
    assert pl.read_parquet(r / "predictions/val/S0.parquet").height == 6
    assert pl.read_parquet(r / "predictions/S0.parquet").height == 9


def test_load_trained_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="summary.json"):
        load_trained(*model_paths(tmp_path / "nothing"))
    write_model_dir(tmp_path / "m", "S0")
    info = json.loads((tmp_path / "m/summary.json").read_text())
    (tmp_path / "m/summary.json").write_text(json.dumps({**info, "arch": "efficientnet_b0"}))
    with pytest.raises(DataError, match="weights.safetensors"):
        load_trained(*model_paths(tmp_path / "m"))


def test_face_count_mismatch_is_an_error(tmp_path):
    write_model_dir(tmp_path / "m", "S0")
    write_split(tmp_path, "test", 6)
    model, summary = load_trained(*model_paths(tmp_path / "m"))
    faces = np.zeros((5, 20, 20, 3), np.uint8)
    manifest = pl.read_parquet(tmp_path / "results/splits/test.parquet")
    with pytest.raises(DataError, match="5 faces"):
        predict_split(model, faces, manifest, 16)
