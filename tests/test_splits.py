"""Subset and subject-disjoint split: sizes, ratios, disjointness, determinism."""

import numpy as np
import polars as pl
import pytest

from fasflow import io
from fasflow.errors import DataError
from fasflow.splits import SPLITS, check_disjoint, choose_subset, split_subjects
from fasflow.steps import run_split

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def fake_images(n_subjects=400, seed=0):
    """Metadata only: subjects with 20-60 images, about 1 live : 2 spoof, ten spoof types."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        for i in range(int(rng.integers(20, 60))):
            label = int(rng.random() < 2 / 3)
            rows.append((f"Data/train/{s}/{'spoof' if label else 'live'}/{i:05d}.jpg", str(s), label, int(rng.integers(1, 11)) if label else 0))
    return pl.DataFrame(rows, schema=["path", "subject_id", "label", "spoof_type"], orient="row")


@pytest.fixture(scope="module")
def images():
    return fake_images()


def test_subset_exact_size_and_ratio(images):
    subset = choose_subset(images, 6000, seed=1)
    assert subset.height == 6000
    live_all = (images["label"] == 0).mean()
    assert abs((subset["label"] == 0).mean() - live_all) < 1e-3
    assert subset["path"].is_unique().all()


def test_subset_too_large_is_an_error(images):
    with pytest.raises(DataError, match="subset.n_images"):
        choose_subset(images, images.height + 1, seed=1)


def test_split_is_subject_disjoint_and_balanced(images):
    subset = choose_subset(images, 6000, seed=1)
    splits = split_subjects(subset, FRACTIONS, seed=3)
    subjects = [set(splits[s]["subject_id"]) for s in SPLITS]
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
    assert sum(splits[s].height for s in SPLITS) == 6000
    live = (subset["label"] == 0).mean()
    for name in SPLITS:
        frame = splits[name]
        assert abs(frame.height - FRACTIONS[name] * 6000) <= 0.01 * 6000, name
        assert abs((frame["label"] == 0).mean() - live) <= 0.02, name
        # every spoof type present in every split
        assert set(frame.filter(pl.col("label") == 1)["spoof_type"]) == set(range(1, 11)), name


def test_split_is_deterministic_and_seed_dependent(images):
    subset = choose_subset(images, 3000, seed=1)
    a = split_subjects(subset, FRACTIONS, seed=3)
    b = split_subjects(subset, FRACTIONS, seed=3)
    c = split_subjects(subset, FRACTIONS, seed=4)
    assert all(a[s].equals(b[s]) for s in SPLITS)
    assert not all(a[s].equals(c[s]) for s in SPLITS)


def test_manifests_are_byte_identical(images, tmp_path):
    path = tmp_path / "images.parquet"
    io.write_parquet(path, images)
    digests = []
    for run in ("a", "b"):
        out = {s: tmp_path / run / f"{s}.parquet" for s in SPLITS}
        run_split(path, **out, report=tmp_path / run / "report.json", subset={"n_images": 2000, "seed": 1}, split={"fractions": FRACTIONS, "seed": 3})
        digests.append([(tmp_path / run / f"{s}.parquet").read_bytes() for s in SPLITS] + [(tmp_path / run / "report.json").read_bytes()])
    assert digests[0] == digests[1]


def test_overlap_detected():
    a = pl.DataFrame({"subject_id": ["1", "2"]})
    b = pl.DataFrame({"subject_id": ["2"]})
    with pytest.raises(DataError, match="subject 2"):
        check_disjoint({"train": a, "val": b})


def test_too_few_subjects(images):
    two = images.filter(pl.col("subject_id").is_in(["0", "1"]))
    with pytest.raises(DataError, match="at least 3 subjects"):
        split_subjects(two, FRACTIONS, seed=0)
