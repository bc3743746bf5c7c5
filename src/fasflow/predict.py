"""Scores of a trained model on a face cache: one row per image, score = P(spoof)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from . import LIVE, SPOOF
from .data import FaceDataset, build_loader, eval_transform
from .errors import DataError
from .metrics import DECISION_THRESHOLD
from .models import resolve_device

MANIFEST_COLUMNS = ("path", "subject_id", "label", "spoof_type")


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
    model = model.to(device, memory_format=torch.channels_last).eval()  # as in training: faster on CPU and GPU
    labels = manifest["label"].to_numpy()
    loader = build_loader(FaceDataset(faces, labels, eval_transform(input_size)), batch_size, shuffle=False)
    scores, margins = [], []
    for images, _ in loader:
        score, margin = spoof_scores(model(images.to(device).contiguous(memory_format=torch.channels_last)))
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
