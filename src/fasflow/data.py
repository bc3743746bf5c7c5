"""Datasets and loaders over the face cache, with the paper's transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .seeding import seed_worker

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transform(input_size: int, crop_scale: tuple[float, float]) -> v2.Compose:
    """RandomResizedCrop + horizontal flip + low-intensity ColorJitter + ImageNet normalisation."""
    low, high = (float(v) for v in crop_scale)
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"train.crop_scale must satisfy 0 < min <= max <= 1, got {list(crop_scale)}")
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(input_size, scale=(low, high), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.02),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform(input_size: int) -> v2.Compose:
    """Resize to input_size x input_size + ImageNet normalisation (val, test, inference)."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((input_size, input_size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class FaceDataset(Dataset):
    """Cached uint8 faces (N, S, S, 3) with their labels; returns (tensor, label)."""

    def __init__(self, faces: np.ndarray, labels: np.ndarray, transform) -> None:
        if len(faces) != len(labels):
            raise ValueError(f"{len(faces)} faces but {len(labels)} labels")
        self.faces = faces
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        face = np.array(self.faces[index])  # a writable copy of the memory-mapped row
        return self.transform(face), int(self.labels[index])


def load_faces(faces_path: str | Path, manifest_path: str | Path) -> tuple[np.ndarray, pl.DataFrame]:
    """Memory-map a face cache and read its manifest (rows in the same order)."""
    faces = np.load(faces_path, mmap_mode="r", allow_pickle=False)
    manifest = pl.read_parquet(manifest_path)
    if len(faces) != manifest.height:
        raise ValueError(
            f"{faces_path} holds {len(faces)} faces but {manifest_path} lists {manifest.height} images"
        )
    return faces, manifest


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose order and augmentation depend only on `seed`."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        generator=generator,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )
