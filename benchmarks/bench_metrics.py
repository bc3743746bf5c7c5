"""Evaluation benchmark: metrics with subject-bootstrap intervals and the paired comparisons, at study scale.

Prints wall times measured in this one run and their ratio to the targets:
  one model's metrics JSON (1,000 resamples, with validation thresholds and TPR@FPR) at the paper's
  test size (6,000 images, 600 subjects) <= 10 s;
  the comparisons table (4 models against the reference, 1,000 paired resamples) at that size <= 30 s.
The official intra_test protocol's 67,170 test images (taken here as 1,000 subjects) are timed too,
to show how the cost grows with the test set.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fasflow.metrics import compare_to_reference, evaluate  # noqa: E402

RESAMPLES = 1000
TARGETS = {"metrics": 10.0, "comparisons": 30.0}


def predictions(n_images: int, n_subjects: int, seed: int, noise: float = 0.3) -> pl.DataFrame:
    """1 live : 2 spoof, ten spoof types, scores with subject-level offsets (clustered errors)."""
    rng = np.random.default_rng(seed)
    subjects = rng.integers(0, n_subjects, n_images)
    labels = (rng.random(n_images) < 2 / 3).astype(np.int64)
    offset = rng.normal(0, 1.0, n_subjects)[subjects]
    logit = np.where(labels == 1, 3.0, -3.0) + offset + rng.normal(0, 1.0 / noise, n_images)
    return pl.DataFrame(
        {
            "path": [f"Data/test/{s}/{i:06d}.png" for i, s in enumerate(subjects)],
            "subject_id": subjects.astype(str),
            "label": labels,
            "spoof_type": np.where(labels == 1, rng.integers(1, 11, n_images), 0),
            "score": 1.0 / (1.0 + np.exp(-logit)),
        }
    )


def timed(label: str, target: float | None, fn) -> float:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    ratio = f"  ({seconds / target:.2f} x the {target:g} s target)" if target else ""
    print(f"{label}: {seconds:.2f} s{ratio}", flush=True)
    return seconds


def main() -> int:
    for n_images, n_subjects, name in ((6_000, 600, "paper test split"), (67_170, 1_000, "intra_test test set")):
        test = predictions(n_images, n_subjects, seed=1)
        val = predictions(n_images, n_subjects, seed=2)
        others = {f"S{i}": test.with_columns(predictions(n_images, n_subjects, seed=10 + i)["score"]) for i in range(1, 5)}
        target = TARGETS if name == "paper test split" else {}
        print(f"-- {name}: {n_images} images, {n_subjects} subjects, {RESAMPLES} resamples", flush=True)
        timed("metrics of one model (evaluate with validation, intervals, TPR@FPR)", target.get("metrics"),
              lambda: evaluate(test, val, n_resamples=RESAMPLES, seed=1))
        timed("comparisons table (4 models vs the reference, paired, Holm)", target.get("comparisons"),
              lambda: compare_to_reference({"S0": test, **others}, "S0", RESAMPLES, 1, 0.95))
    return 0


if __name__ == "__main__":
    sys.exit(main())
