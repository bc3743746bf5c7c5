"""Data-stage benchmark: ingest + subset + split at CelebA-Spoof scale, face cache and loader throughput.

Prints figures and ratios measured in this one run. Targets (issue 2):
  ingest + subset + split of 625,537 labelled images / 10,177 subjects <= 10 s (file checks off);
  DataLoader throughput >= 3x MobileNetV2 training throughput at the same input size.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench_train import raw_throughput  # noqa: E402  (benchmarks/ is on sys.path: scripts run from here)
from fasflow.data import FaceDataset, build_loader, train_transform  # noqa: E402
from fasflow.faces import write_face_cache  # noqa: E402
from fasflow.ingest import ingest  # noqa: E402
from fasflow.splits import choose_subset, split_subjects  # noqa: E402

N_TRAIN, N_TEST, N_SUBJECTS = 494_405, 131_132, 10_177  # 625,537 labelled images in all


def celeba_scale_labels(root: Path, seed: int = 0) -> list[str]:
    """Label files shaped like CelebA-Spoof's (no image files), about 1 live : 3 spoof."""
    rng = np.random.default_rng(seed)
    files = []
    subject_of = rng.integers(1, N_SUBJECTS + 1, size=N_TRAIN + N_TEST)
    spoof = rng.random(N_TRAIN + N_TEST) < 0.75
    types = np.where(spoof, rng.integers(1, 11, size=spoof.size), 0)
    offset = 0
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        ext = "jpg" if split == "train" else "png"
        labels = {}
        for i in range(offset, offset + n):
            kind = "spoof" if spoof[i] else "live"
            vector = [0] * 40 + [int(types[i]), 1, 1, int(spoof[i])]
            labels[f"Data/{split}/{subject_of[i]}/{kind}/{i:06d}.{ext}"] = vector
        offset += n
        path = root / "metas" / "intra_test" / f"{split}_label.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(labels))
        files.append(str(path.relative_to(root)))
    return files


def bench_ingest_split() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = celeba_scale_labels(root)
        start = time.perf_counter()
        table, report = ingest(root, files, {}, check_files=False)
        t_ingest = time.perf_counter() - start
        subset = choose_subset(table, 60_000, seed=1, unit="image")
        t_subset = time.perf_counter() - start - t_ingest
        splits = split_subjects(subset, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
        total = time.perf_counter() - start
    sizes = {k: v.height for k, v in splits.items()}
    print(f"ingest {report['listed']:,} labelled images / {report['subjects']:,} subjects: {t_ingest:.2f} s")
    print(f"subset 60,000: {t_subset:.2f} s; split: {total - t_ingest - t_subset:.2f} s; sizes {sizes}")
    print(f"ingest+subset+split total: {total:.2f} s (target <= 10 s: {'OK' if total <= 10 else 'MISSED'})")


def bench_face_cache(n: int = 400) -> None:
    from PIL import Image
    import polars as pl

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)).save(root / f"{i}.png")
        manifest = pl.DataFrame({"path": [f"{i}.png" for i in range(n)], "box_x": [200.0] * n, "box_y": [100.0] * n, "box_w": [200.0] * n, "box_h": [240.0] * n})
        manifest.write_parquet(root / "split.parquet")
        for threads in (1, 2):
            out = root / f"faces{threads}"
            start = time.perf_counter()
            write_face_cache(root / "split.parquet", root, 0.2, 256, threads, {}, out / "f.npy", out / "f.parquet", out / "f.json")
            elapsed = time.perf_counter() - start
            print(f"face cache 640x480 PNG -> 256 px, {threads} thread(s): {n / elapsed:.0f} images/s")


def loader_throughput(faces: np.ndarray, size: int, workers: int, batches: int = 15) -> float:
    dataset = FaceDataset(faces, np.arange(len(faces)) % 2, train_transform(size, (0.08, 1.0)))
    loader = build_loader(dataset, 32, shuffle=True, num_workers=workers, seed=0)
    it = iter(loader)
    next(it)  # start-up of workers is not throughput
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        images, _ = next(it)
        seen += len(images)
    return seen / (time.perf_counter() - start)


def bench_loader_vs_training() -> None:
    rng = np.random.default_rng(0)
    for face_size, size in ((256, 224), (56, 48)):
        faces = rng.integers(0, 256, size=(600, face_size, face_size, 3), dtype=np.uint8)
        loader = loader_throughput(faces, size, workers=1)
        train = raw_throughput(size, steps=5)
        print(f"{size} px: DataLoader (1 worker) {loader:.0f} img/s, MobileNetV2 training {train:.0f} img/s, ratio {loader / train:.1f}x (target >= 3x)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    bench_ingest_split()
    bench_face_cache()
    bench_loader_vs_training()
