"""Subset and split at CelebA-Spoof scale: 625,537 images of 10,177 subjects (labels only, no image files).

Prints the seconds of each step measured in this one run. Targets (issues 13 and 14):
  subset of 60,000 + subject split: a few seconds (either subset unit);
  the whole 625k-image table split by subject (no subset; paper or official protocol): well under 60 s.
Also prints the median images per subject of each split, which must be alike (a random draw of subjects).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from bench_data import celeba_scale_labels  # noqa: E402
from fasflow.ingest import ingest  # noqa: E402
from fasflow.splits import choose_subset, split_official_protocol, split_subjects  # noqa: E402

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
TARGET_SUBSET_SPLIT_S = 5.0
TARGET_FULL_SPLIT_S = 60.0


def celeba_scale_table() -> pl.DataFrame:
    """The ingest table of bench_data's CelebA-scale label files (625,537 rows, 10,177 subjects)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = celeba_scale_labels(root)
        table, _ = ingest(root, files, {}, check_files=False)
    return table


def with_protocol_split(table: pl.DataFrame) -> pl.DataFrame:
    """A protocol_split column as an official protocol's label files would give it.

    bench_data's generator puts every subject in both label files; here one subject in six is a
    test-file subject, and one in 97 of the others keeps its images' own file (so it crosses).
    """
    subject = pl.col("subject_id").cast(pl.Int64)
    return table.with_columns(
        pl.when(subject % 6 == 0).then(pl.lit("test"))
        .when(subject % 97 == 1).then(pl.col("official_split"))
        .otherwise(pl.lit("train"))
        .alias("protocol_split")
    )


def medians(splits: dict[str, pl.DataFrame]) -> str:
    return ", ".join(f"{name} {np.median(frame.group_by('subject_id').len()['len'].to_numpy()):g}" for name, frame in splits.items())


def timed(step):
    start = time.perf_counter()
    result = step()
    return result, time.perf_counter() - start


def main() -> None:
    table, seconds = timed(celeba_scale_table)
    print(f"ingest table: {table.height:,} images, {table['subject_id'].n_unique():,} subjects ({seconds:.1f} s, not timed below)")
    for unit in ("image", "subject"):
        subset, t_subset = timed(lambda: choose_subset(table, 60_000, seed=1, unit=unit))
        splits, t_split = timed(lambda: split_subjects(subset, FRACTIONS, seed=1))
        total = t_subset + t_split
        sizes = {k: v.height for k, v in splits.items()}
        print(
            f"subset 60,000 by {unit}: {t_subset:.2f} s ({subset['subject_id'].n_unique():,} subjects); split: {t_split:.2f} s; "
            f"sizes {sizes}; median images per subject {medians(splits)}; total {total:.2f} s "
            f"(target <= {TARGET_SUBSET_SPLIT_S:g} s: {'OK' if total <= TARGET_SUBSET_SPLIT_S else 'MISSED'})"
        )
    everything, t_all = timed(lambda: split_subjects(choose_subset(table, None, seed=1, unit="image"), FRACTIONS, seed=1))
    print(
        f"paper protocol, no subset ({table.height:,} images): {t_all:.2f} s; sizes {({k: v.height for k, v in everything.items()})}; "
        f"median images per subject {medians(everything)} (target < {TARGET_FULL_SPLIT_S:g} s: {'OK' if t_all < TARGET_FULL_SPLIT_S else 'MISSED'})"
    )
    protocol = with_protocol_split(table)
    official, t_protocol = timed(lambda: split_official_protocol(protocol, 0.1, seed=1, n_images=None, unit="image", subset_seed=1))
    print(
        f"official protocol, no subset ({protocol.height:,} images): {t_protocol:.2f} s; sizes {({k: v.height for k, v in official.items()})}; "
        f"median images per subject {medians(official)} (target < {TARGET_FULL_SPLIT_S:g} s: {'OK' if t_protocol < TARGET_FULL_SPLIT_S else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
