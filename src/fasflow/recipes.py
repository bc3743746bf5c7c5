"""From the workflow config to concrete training runs (teacher, scenarios, tuned overrides)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import DEFAULT_CROP_SCALE, load_faces
from .models import create_model, load_weights
from .train import TrainConfig, train_model

HYPER_KEYS = ("optimizer", "lr", "weight_decay", "dropout", "patience", "distill", "alpha", "temperature")


def train_config(config: dict, name: str, overrides: dict | None = None, seed: int | None = None) -> TrainConfig:
    """The TrainConfig of `name` ('teacher' or a scenario), optionally with tuned `overrides`."""
    if name == "teacher":
        section, arch = dict(config["teacher"]), config["models"]["teacher"]
        section["distill"] = False
    else:
        section, arch = dict(config["scenarios"][name]), config["models"]["student"]
    section.update(overrides or {})
    train = config["train"]
    return TrainConfig(
        name=name,
        arch=arch,
        **{k: section[k] for k in HYPER_KEYS if k in section},
        input_size=train["input_size"],
        crop_scale=tuple(train.get("crop_scale", DEFAULT_CROP_SCALE)),
        batch_size=train["batch_size"],
        max_epochs=train["max_epochs"],
        num_workers=train["num_workers"],
        device=train["device"],
        seed=train["seed"] if seed is None else seed,
        class_weighted=train["class_weighted"],
        pretrained=config["models"]["pretrained"],
        pretrained_dir=config["models"]["pretrained_dir"],
    )


def load_split(faces_path, manifest_path) -> tuple[np.ndarray, np.ndarray]:
    faces, manifest = load_faces(faces_path, manifest_path)
    return faces, manifest["label"].to_numpy().astype(np.int64)


def load_frozen_teacher(config: dict, weights: str | Path):
    """The trained teacher in eval mode with gradients off."""
    teacher = create_model(config["models"]["teacher"], config["teacher"]["dropout"], pretrained=False)
    load_weights(teacher, weights).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def run_training(cfg: TrainConfig, config: dict, inputs: dict, out_dir, **kwargs) -> dict:
    """Train `cfg` on the train/val faces named in `inputs` (train_faces, train_manifest, val_*, teacher?)."""
    train_faces, train_labels = load_split(inputs["train_faces"], inputs["train_manifest"])
    val_faces, val_labels = load_split(inputs["val_faces"], inputs["val_manifest"])
    teacher = load_frozen_teacher(config, inputs["teacher"]) if cfg.distill else None
    return train_model(cfg, train_faces, train_labels, val_faces, val_labels, out_dir, teacher=teacher, **kwargs)
