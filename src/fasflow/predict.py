"""Scores of a trained model on a face cache: one row per image, score = P(spoof)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from . import SPOOF
from .data import FaceDataset, build_loader, eval_transform
from .errors import DataError
from .models import resolve_device

MANIFEST_COLUMNS = ("path", "subject_id", "label", "spoof_type")


@torch.inference_mode()
def predict_split(
    model: torch.nn.Module,
    faces: np.ndarray,
    manifest: pl.DataFrame,
    input_size: int,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    threshold: float = 0.5,
) -> pl.DataFrame:
    """Predictions for every row of `manifest` (row i = faces[i]).

    Columns: path, subject_id, label, spoof_type, score (softmax P(spoof)), pred
    (score >= threshold, the metrics' tie rule).
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
    scores = []
    for images, _ in loader:
        logits = model(images.to(device))
        scores.append(torch.softmax(logits.float(), dim=1)[:, SPOOF].cpu().numpy())
    score = np.concatenate(scores) if scores else np.empty(0, dtype=np.float32)
    return manifest.select(
        pl.col("path"),
        pl.col("subject_id").cast(pl.Utf8),
        pl.col("label").cast(pl.Int64),
        pl.col("spoof_type").cast(pl.Int64),
    ).with_columns(
        pl.Series("score", score.astype(np.float64)),
        pl.Series("pred", (score >= threshold).astype(np.int64)),
    )
