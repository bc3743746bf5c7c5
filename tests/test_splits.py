"""Subset and subject-disjoint split: sizes, ratios, disjointness, report, determinism, errors."""

import json

import numpy as np
import polars as pl
import pytest

from fasflow import io
from fasflow.errors import ConfigError, DataError
from fasflow.splits import SPLITS, check_disjoint, choose_subset, split_report, split_subjects
from fasflow.steps import run_split

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
UNITS = ("image", "subject")


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


@pytest.mark.parametrize("unit", UNITS)
def test_subset_exact_size_and_ratio(images, unit):
    subset = choose_subset(images, 6000, seed=1, unit=unit)
    assert subset.height == 6000
    live_all = (images["label"] == 0).mean()
    assert abs((subset["label"] == 0).mean() - live_all) < 1e-3
    assert subset["path"].is_unique().all()
    assert subset["path"].is_in(images["path"].implode()).all()
    assert subset["path"].to_list() == sorted(subset["path"].to_list())


@pytest.mark.parametrize("unit", UNITS)
def test_subset_ignores_row_order_and_depends_on_seed(images, unit):
    shuffled = images.sample(fraction=1.0, shuffle=True, seed=5)
    a = choose_subset(images, 3000, seed=1, unit=unit)
    assert a.equals(choose_subset(shuffled, 3000, seed=1, unit=unit))
    assert not a.equals(choose_subset(images, 3000, seed=2, unit=unit))


def test_no_subset_is_every_image(images):
    subset = choose_subset(images.reverse(), None, seed=1, unit="image")
    assert subset.equals(images.sort("path"))


def test_subject_subset_takes_subjects_whole_except_a_trim(images):
    subset = choose_subset(images, 6000, seed=1, unit="subject")
    chosen = subset["subject_id"].unique()
    pool = images.filter(pl.col("subject_id").is_in(chosen.implode()))
    # Far fewer identities than the image unit, and the trim takes only a small share of their images.
    assert chosen.len() < 0.5 * choose_subset(images, 6000, seed=1, unit="image")["subject_id"].n_unique()
    assert subset.height >= 0.9 * pool.height


def test_subset_too_large_is_an_error(images):
    with pytest.raises(DataError, match="subset.n_images"):
        choose_subset(images, images.height + 1, seed=1, unit="image")


def test_unknown_unit_is_a_config_error(images):
    with pytest.raises(ConfigError, match="subset.unit"):
        choose_subset(images, 100, seed=1, unit="identity")


def test_subject_subset_that_would_strip_a_class_is_an_error():
    # 50 subjects with one live and one spoof image, one subject with 100 live images: 10 images
    # (8 live, 2 spoof) cannot keep both classes of the 8+ mixed subjects the seeded order takes first.
    rows = [(f"Data/train/{s}/{kind}/{s}{kind}.jpg", str(s), label, label) for s in range(50) for kind, label in (("live", 0), ("spoof", 1))]
    rows += [(f"Data/train/99/live/{i:03d}.jpg", "99", 0, 0) for i in range(100)]
    images = pl.DataFrame(rows, schema=["path", "subject_id", "label", "spoof_type"], orient="row")
    with pytest.raises(DataError, match="too small for subset.unit 'subject'"):
        choose_subset(images, 10, seed=0, unit="subject")


@pytest.mark.parametrize("unit", UNITS)
def test_split_is_subject_disjoint_and_balanced(images, unit):
    subset = choose_subset(images, 6000, seed=1, unit=unit)
    splits = split_subjects(subset, FRACTIONS, seed=3)
    subjects = [set(splits[s]["subject_id"]) for s in SPLITS]
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
    assert pl.concat([splits[s] for s in SPLITS]).sort("path").equals(subset)
    live = (subset["label"] == 0).mean()
    for name in SPLITS:
        frame = splits[name]
        assert abs(frame.height - FRACTIONS[name] * 6000) <= 0.01 * FRACTIONS[name] * 6000, name
        assert abs((frame["label"] == 0).mean() - live) <= 0.02, name
        # every spoof type present in every split
        assert set(frame.filter(pl.col("label") == 1)["spoof_type"]) == set(range(1, 11)), name


def test_split_takes_any_split_names(images):
    splits = split_subjects(images, {"train": 0.7, "val": 0.3}, seed=1)
    assert list(splits) == ["train", "val"]
    assert abs(splits["val"].height - 0.3 * images.height) <= 0.01 * images.height


def test_split_is_deterministic_and_seed_dependent(images):
    subset = choose_subset(images, 3000, seed=1, unit="image")
    a = split_subjects(subset, FRACTIONS, seed=3)
    b = split_subjects(subset.reverse(), FRACTIONS, seed=3)
    c = split_subjects(subset, FRACTIONS, seed=4)
    assert all(a[s].equals(b[s]) for s in SPLITS)
    assert not all(a[s].equals(c[s]) for s in SPLITS)


@pytest.mark.parametrize("unit", UNITS)
def test_manifests_are_byte_identical(images, tmp_path, unit):
    path = tmp_path / "images.parquet"
    io.write_parquet(path, images)
    digests = []
    for run in ("a", "b", "c"):
        out = {s: tmp_path / run / f"{s}.parquet" for s in SPLITS}
        seed = 3 if run != "c" else 4
        run_split(
            path, **out, report=tmp_path / run / "report.json", protocol="paper",
            subset={"n_images": 2000, "seed": 1, "unit": unit}, split={"fractions": FRACTIONS, "seed": seed, "val_fraction": 0.1},
        )
        digests.append([(tmp_path / run / f"{s}.parquet").read_bytes() for s in SPLITS] + [(tmp_path / run / "report.json").read_bytes()])
    assert digests[0] == digests[1]
    assert digests[0][:3] != digests[2][:3]


def test_paper_run_split_report(images, tmp_path):
    path = tmp_path / "images.parquet"
    io.write_parquet(path, images)
    out = {s: tmp_path / f"{s}.parquet" for s in SPLITS}
    report = run_split(
        path, **out, report=tmp_path / "report.json", protocol="paper",
        subset={"n_images": 3000, "seed": 1, "unit": "image"}, split={"fractions": FRACTIONS, "seed": 3, "val_fraction": 0.1},
    )
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(report))
    assert report["protocol_name"] == "paper"
    assert report["subset"]["images"] == 3000
    assert report["subset"]["available_subjects"] == 400
    assert report["subset"]["subjects"] == sum(report["splits"][s]["subjects"] for s in SPLITS)
    for name in SPLITS:
        manifest = pl.read_parquet(out[name])
        assert manifest.columns == images.columns
        assert report["splits"][name]["images"] == manifest.height
        assert report["splits"][name]["subjects"] == manifest["subject_id"].n_unique()


def test_split_report_gives_images_per_subject_by_hand():
    # Subjects of 1, 2, 3 and 10 images; numpy's linear quantiles: q1 1.75, median 2.5, q3 4.75.
    sizes = {"a": 1, "b": 2, "c": 3, "d": 10}
    rows = [(f"{s}/{i}", s, 0 if s == "a" else 1, 0 if s == "a" else 1) for s, n in sizes.items() for i in range(n)]
    train = pl.DataFrame(rows, schema=["path", "subject_id", "label", "spoof_type"], orient="row")
    test = train.filter(pl.col("subject_id") == "d")
    report = split_report({"train": train, "test": test}, {"train": 0.9, "test": None})
    dist = report["splits"]["train"]["images_per_subject"]
    assert dist == {"min": 1, "q1": 1.75, "median": 2.5, "q3": 4.75, "max": 10, "mean": 4.0}
    assert report["splits"]["train"]["single_class_subjects"] == {"live_only": 1, "spoof_only": 3}
    assert report["splits"]["train"]["fraction"] == 1.0
    assert report["splits"]["test"]["fraction"] is None


def test_overlap_detected():
    a = pl.DataFrame({"subject_id": ["1", "2"]})
    b = pl.DataFrame({"subject_id": ["2"]})
    with pytest.raises(DataError, match="subject 2"):
        check_disjoint({"train": a, "val": b})


def test_too_few_subjects(images):
    two = images.filter(pl.col("subject_id").is_in(["0", "1"]))
    with pytest.raises(DataError, match="at least 3 subjects"):
        split_subjects(two, FRACTIONS, seed=0)
