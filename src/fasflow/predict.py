"""Scores of a trained model on a face cache: one row per image, score = P(spoof)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from . import LIVE, SPOOF
from .data import FaceDataset, build_loader, eval_transform
from .errors import DataError
from .io import read_json
from .metrics import DECISION_THRESHOLD
from .models import create_model, load_weights

MANIFEST_COLUMNS = ("path", "subject_id", "label", "spoof_type")


def load_trained_model(model_dir: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from results/models/{name}/ (summary.json + weights.safetensors), in eval mode."""
    model_dir = Path(model_dir)
    summary_path = model_dir / "summary.json"
    weights_path = model_dir / "weights.safetensors"
    for path in (summary_path, weights_path):
        if not path.is_file():
            raise DataError(f"{path}: not found (train the model first)")
    summary = read_json(summary_path)
    missing = [k for k in ("arch", "dropout", "input_size") if k not in summary]
    if missing:
        raise DataError(f"{summary_path}: missing key(s) {missing}")
    model = create_model(summary["arch"], dropout=float(summary["dropout"]), pretrained=False)
    try:
        load_weights(model, weights_path)
    except RuntimeError as exc:  # shape/key mismatch between summary.json and the weights
        raise DataError(f"{weights_path}: does not fit {summary['arch']!r} ({exc})") from exc
    model.eval()
    return model, summary


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def spoof_scores(logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """P(spoof) and the logit margin (spoof minus live) of a batch of two-class logits, in float64.

    A float32 softmax returns exactly 1.0 once the margin passes ~17 and so ties the most
    confident spoofs, which distorts AUC and EER; in float64 P(spoof) stays below 1 up to a
    margin of ~36.7, and the margin itself keeps the order beyond that.
    """
    logits = logits.detach().to(torch.float64)
    score = torch.softmax(logits, dim=1)[:, SPOOF]
    margin = logits[:, SPOOF] - logits[:, LIVE]
    return score.cpu().numpy(), margin.cpu().numpy()


@torch.inference_mode()
def predict_split(
    model: torch.nn.Module,
    faces: np.ndarray,
    manifest: pl.DataFrame,
    input_size: int,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> pl.DataFrame:
    """Predictions for every row of `manifest` (row i = faces[i]).

    Columns: path, subject_id, label, spoof_type, score (softmax P(spoof), float64), pred
    (score >= DECISION_THRESHOLD, the metrics' tie rule) and logit (spoof minus live logit,
    float64: the full ranking where P(spoof) rounds to 1).
    """
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(f"manifest: missing column(s) {missing}")
    if len(faces) != manifest.height:
        raise DataError(f"{len(faces)} faces but the manifest lists {manifest.height} images")
    device = resolve_device(device) if isinstance(device, str) else device
    model = model.to(device).eval()
    labels = manifest["label"].to_numpy()
    loader = build_loader(FaceDataset(faces, labels, eval_transform(input_size)), batch_size, shuffle=False)
    scores, margins = [], []
    for images, _ in loader:
        score, margin = spoof_scores(model(images.to(device)))
        scores.append(score)
        margins.append(margin)
    score = np.concatenate(scores) if scores else np.empty(0, dtype=np.float64)
    margin = np.concatenate(margins) if margins else np.empty(0, dtype=np.float64)
    return manifest.select(
        pl.col("path"),
        pl.col("subject_id").cast(pl.Utf8),
        pl.col("label").cast(pl.Int64),
        pl.col("spoof_type").cast(pl.Int64),
    ).with_columns(
        pl.Series("score", score, dtype=pl.Float64),
        pl.Series("pred", (score >= DECISION_THRESHOLD).astype(np.int64)),
        pl.Series("logit", margin, dtype=pl.Float64),
    )


def run_predict(
    model_dir: str | Path,
    splits: dict[str, tuple[str | Path, str | Path, str | Path]],
    batch_size: int = 64,
    device: str = "auto",
) -> None:
    """Workflow step: for each split name -> (faces.npy, manifest.parquet, output.parquet), write predictions."""
    from .data import load_faces
    from .io import write_parquet
    from .runlog import get_logger

    log = get_logger()
    model, summary = load_trained_model(model_dir)
    log.info("model %s (%s, input %d) on %s", summary.get("name"), summary["arch"], summary["input_size"], device)
    for split, (faces_path, manifest_path, out_path) in splits.items():
        try:
            faces, manifest = load_faces(faces_path, manifest_path)
        except ValueError as exc:
            raise DataError(str(exc)) from exc
        df = predict_split(model, faces, manifest, int(summary["input_size"]), batch_size, device)
        write_parquet(out_path, df)
        log.info("%s: %d images, %d predicted spoof -> %s", split, df.height, int(df["pred"].sum()), out_path)
