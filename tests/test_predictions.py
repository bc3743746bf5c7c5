"""predict_split, the predict step and load_trained on a tiny untrained model and a fabricated face cache."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from conftest import model_paths
from eval_fakes import write_model_dir, write_split

from fasflow.data import FaceDataset, build_loader, eval_transform, load_faces
from fasflow.errors import DataError
from fasflow.metrics import DECISION_THRESHOLD
from fasflow.models import load_trained
from fasflow.predict import predict_split, spoof_scores
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
    assert df.columns == ["path", "subject_id", "label", "spoof_type", "score", "pred", "logit"]
    assert df.schema["score"] == pl.Float64 and df.schema["logit"] == pl.Float64
    assert df["path"].to_list() == manifest["path"].to_list()  # row i = image i
    scores = df["score"].to_numpy()
    assert np.all((scores >= 0) & (scores <= 1))
    assert (df["pred"].to_numpy() == (scores >= DECISION_THRESHOLD)).all()
    assert (df["pred"].to_numpy() == (df["logit"].to_numpy() >= 0)).all()  # 0.5 = argmax of the softmax
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
        val_faces=r / "faces/val.npy", val_manifest=r / "faces/val.parquet",
        test_faces=r / "faces/test.npy", test_manifest=r / "faces/test.parquet",
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


# --- no artificial ties at large logit margins ---------------------------------------------


class ConfidentModel(torch.nn.Module):
    """Logits (0, margin) with a margin of ~18.5 to ~35 that grows with the image's brightness."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        margin = 26.0 + 3.5 * images.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(margin), margin], dim=1)


def bright_faces(n: int = 40, size: int = 20) -> np.ndarray:
    """Uniform images of increasing brightness: one logit margin each, all different."""
    return np.repeat(np.linspace(0, 255, n).astype(np.uint8), size * size * 3).reshape(n, size, size, 3)


def test_large_logit_margins_give_distinct_scores():
    margins = torch.arange(17.0, 36.0).reshape(-1, 1)
    logits = torch.cat([torch.zeros_like(margins), margins], dim=1)
    # Before: a float32 softmax rounds every one of these to exactly 1.0, 19 scores tied.
    assert (torch.softmax(logits, dim=1)[:, 1] == 1.0).all()
    score, margin = spoof_scores(logits)
    assert score.dtype == np.float64 and len(np.unique(score)) == len(margins) and (score < 1.0).all()
    assert np.all(np.diff(score) > 0) and np.array_equal(margin, margins[:, 0].numpy())
    # Beyond a margin of ~36.7 float64 rounds to 1 as well; the stored logit margin keeps the order.
    score, margin = spoof_scores(torch.tensor([[0.0, 40.0], [0.0, 50.0]]))
    assert (score == 1.0).all() and margin[1] > margin[0]


def test_predictions_and_validation_scores_are_not_tied(tmp_path):
    from fasflow.train import evaluate as validation_scores

    write_split(tmp_path, "test", 40)
    manifest = pl.read_parquet(tmp_path / "results/splits/test.parquet")
    faces = bright_faces()
    df = predict_split(ConfidentModel(), faces, manifest, input_size=16, batch_size=8)
    logit = df["logit"].to_numpy()
    assert logit.min() > 17 and len(np.unique(logit)) == 40
    assert df["score"].n_unique() == 40 and df["score"].max() < 1.0  # float32: all 40 were 1.0
    labels = manifest["label"].to_numpy()
    loader = build_loader(FaceDataset(faces, labels, eval_transform(16)), 8, shuffle=False)
    _, val_scores = validation_scores(ConfidentModel(), loader, torch.device("cpu"), None, torch.bfloat16)
    assert val_scores.dtype == np.float64 and len(np.unique(val_scores)) == 40
    assert np.array_equal(val_scores, df["score"].to_numpy())
