"""Fabricated predictions, metrics, trained-model folders and face caches for evaluation tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import polars as pl

SCENARIOS = ["S0", "S1", "S2", "S3"]


def fake_predictions(n_subjects: int = 30, per_subject: int = 6, seed: int = 0, noise: float = 0.25) -> pl.DataFrame:
    """Test-like predictions: about 1 live : 2 spoof, spoof types 1..9 (no 3D mask), subject ids."""
    rng = np.random.default_rng(seed)
    n = n_subjects * per_subject
    subjects = np.repeat(np.arange(n_subjects), per_subject)
    labels = (rng.random(n) < 0.67).astype(int)
    types = np.where(labels == 1, rng.integers(1, 10, n), 0)
    scores = np.clip(labels + rng.normal(0, noise, n), 0, 1)
    # Every model sees the same images in the same paths.
    rng_paths = np.random.default_rng(0)
    order = rng_paths.permutation(n)
    return pl.DataFrame(
        {
            "path": [f"Data/test/{s}/img{i}.png" for i, s in zip(order, subjects)],
            "subject_id": [str(s) for s in subjects],
            "label": labels,
            "spoof_type": types,
            "score": scores,
            "pred": (scores >= 0.5).astype(int),
        }
    )


def same_images(base: pl.DataFrame, seed: int, noise: float = 0.25) -> pl.DataFrame:
    """Another model's scores on the images of `base`."""
    rng = np.random.default_rng(seed)
    scores = np.clip(base["label"].to_numpy() + rng.normal(0, noise, base.height), 0, 1)
    return base.with_columns(pl.Series("score", scores), pl.Series("pred", (scores >= 0.5).astype(int)))


def summary(name: str, distill: bool = False, **hyper) -> dict:
    hp = {"optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.01, "dropout": 0.2, "patience": 5, "distill": distill}
    if distill:
        hp.update(alpha=0.6, temperature=4.0)
    hp.update(hyper)
    return {
        "name": name,
        "arch": "mobilenetv2_100",
        "dropout": hp["dropout"],
        "input_size": 16,
        "hyperparameters": hp,
        "seed": 1,
        "best_epoch": 2,
        "val_metrics": {"f1": 0.9, "acer": 0.1},
    }


def write_history(path: Path, epochs: int = 3) -> None:
    columns = ["epoch", "train_loss", "val_loss", "val_f1", "val_apcer", "val_bpcer", "val_acer", "lr", "seconds", "images_per_s"]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for e in range(1, epochs + 1):
            writer.writerow([e, 1 / e, 1.2 / e, 0.8 + 0.03 * e, 0.2 / e, 0.1 / e, 0.15 / e, 1e-4, 1.0, 100.0])


def write_model_dir(directory: Path, name: str, seed: int = 0, **summary_kwargs) -> None:
    """A real (untrained) tiny model saved as results/models/{name}/ would be."""
    import torch

    from fasflow.models import create_model, save_weights

    directory.mkdir(parents=True, exist_ok=True)
    info = summary(name, **summary_kwargs)
    torch.manual_seed(seed)
    model = create_model(info["arch"], dropout=info["dropout"])
    save_weights(model, directory / "weights.safetensors")
    (directory / "summary.json").write_text(json.dumps(info))
    write_history(directory / "history.csv")


def write_split(root: Path, split: str, n: int, size: int = 20, seed: int = 0) -> None:
    """results/faces/{split}.npy with n images, its manifest (results/faces/{split}.parquet, the same
    as the split's results/splits/{split}.parquet: nothing was skipped) and the cache's report."""
    rng = np.random.default_rng(seed)
    labels = np.array([i % 3 != 0 for i in range(n)], dtype=int)  # 1 live : 2 spoof
    manifest = pl.DataFrame(
        {
            "path": [f"Data/{split}/{i // 3}/x{i}.png" for i in range(n)],
            "subject_id": [str(i // 3) for i in range(n)],
            "label": labels,
            "spoof_type": np.where(labels == 1, 1 + np.arange(n) % 10, 0),
        }
    )
    (root / "results/faces").mkdir(parents=True, exist_ok=True)
    (root / "results/splits").mkdir(parents=True, exist_ok=True)
    np.save(root / f"results/faces/{split}.npy", rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))
    manifest.write_parquet(root / f"results/splits/{split}.parquet")
    manifest.write_parquet(root / f"results/faces/{split}.parquet")
    (root / f"results/faces/{split}.json").write_text(json.dumps({"images": n, "cached": n, "skipped": {}}))


FABRICATED_CONFIG = """
dataset:
  root: {root}/celeba
  synthetic: {{enabled: true}}
scenarios:
  S0: {{distill: false, tune: false}}
  S1: {{distill: false, tune: false, lr: 9.7e-5, dropout: 0.3}}
  S2: {{distill: true, tune: false}}
  S3: {{distill: true, tune: false}}
"""


def fabricated_study(work: Path, models, config_name: str, extra_config: str) -> Path:
    """A Snakemake working directory whose training part is fabricated: untrained model folders
    (S2 and S3 distilled, none tuned), val/test face caches and manifests, and a config file
    `config_name` (FABRICATED_CONFIG + `extra_config`)."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "config", work / "config")
    (work / config_name).write_text(FABRICATED_CONFIG.format(root=work) + extra_config)
    for i, name in enumerate(models):
        write_model_dir(work / "results/models" / name, name, seed=i, distill=name in ("S2", "S3"))
    write_split(work, "val", 12, size=24, seed=1)
    write_split(work, "test", 18, size=24, seed=2)
    return work
def clustered_pair(
    rng: np.random.Generator,
    n_subjects: int = 150,
    per_subject: int = 10,
    error_rate: float = 0.05,
    other_error_rate: float | None = None,
    concentration: float = 2.0,
) -> dict[str, np.ndarray]:
    """Two models scored on the same test images, with errors that cluster in subjects.

    Each model has its own error propensity per subject, drawn from Beta(c * rate, c * (1 - rate))
    (small `concentration` c: a few subjects hold most errors, as faces that one model finds hard).
    With `other_error_rate` None both models are equally good in the subject population, so any
    difference on one test set is chance. Scores: P(spoof) = sigmoid(logit), |logit| ~ |N(3, 1.5)|,
    on the wrong side of 0.5 for an error. About 1 live : 2 spoof.
    """
    n = n_subjects * per_subject
    subjects = np.repeat(np.arange(n_subjects), per_subject)
    labels = rng.random(n) < 2 / 3

    def scores(rate: float) -> np.ndarray:
        propensity = rng.beta(concentration * rate, concentration * (1 - rate), n_subjects)[subjects]
        wrong = rng.random(n) < propensity
        logit = np.where(labels, 1.0, -1.0) * np.abs(rng.normal(3.0, 1.5, n))
        return 1.0 / (1.0 + np.exp(-np.where(wrong, -logit, logit)))

    reference = scores(error_rate)
    other = scores(error_rate if other_error_rate is None else other_error_rate)
    return {"labels": labels.astype(np.int64), "subjects": subjects, "reference": reference, "other": other}
