"""A hand-made CelebA-Spoof tree for ingest tests: every byte of it is chosen here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def label_vector(label: int, spoof_type: int, illumination: int = 0, environment: int = 0) -> list[int]:
    vector = [0] * 44
    vector[40], vector[41], vector[42], vector[43] = spoof_type, illumination, environment, label
    return vector


def write_image(path: Path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)


def make_tree(root: Path, subjects: int = 6, per_class: tuple[int, int] = (2, 4), size=(100, 80)) -> dict:
    """Subjects 1..N (odd ones in official test), `per_class` live/spoof images each, good boxes."""
    labels = {"train": {}, "test": {}}
    for s in range(1, subjects + 1):
        split = "test" if s % 3 == 0 else "train"
        ext = "png" if split == "test" else "jpg"
        for kind, count in (("live", per_class[0]), ("spoof", per_class[1])):
            for i in range(count):
                rel = f"Data/{split}/{s}/{kind}/{s:03d}{i:03d}{kind[0]}.{ext}"
                write_image(root / rel, *size, seed=s * 100 + i)
                (root / rel).with_name(Path(rel).stem + "_BB.txt").write_text("56 56 112 112 0.99\n")
                spoof_type = 0 if kind == "live" else 1 + (s + i) % 10
                labels[split][rel] = label_vector(int(kind == "spoof"), spoof_type)
    meta = root / "metas" / "intra_test"
    meta.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (meta / f"{split}_label.json").write_text(json.dumps(labels[split]))
    return labels


LABEL_FILES = ["metas/intra_test/train_label.json", "metas/intra_test/test_label.json"]
