"""Official-protocol split (issue 13 item 1, split side): test file whole, train file split by subject, no identity crossing."""

import json

import polars as pl
import pytest

from fasflow import io
from fasflow.errors import ConfigError, DataError
from fasflow.splits import SPLITS, crossing_subjects, split_official_protocol
from fasflow.steps import run_split
from split_populations import lognormal_population, with_protocol_files

SUBSET = {"n_images": None, "seed": 1, "unit": "image"}
SPLIT = {"fractions": {"train": 0.8, "val": 0.1, "test": 0.1}, "seed": 3, "val_fraction": 0.1}


@pytest.fixture(scope="module")
def images():
    """~8k images of 600 subjects; a fifth of the subjects in the test file, 15 more listed in both files."""
    population = lognormal_population(n_subjects=600, median_images=10, sigma=0.6, seed=4)
    return with_protocol_files(population, test_subject_share=0.2, crossing_subjects=15, seed=5)


def expected_crossing(images: pl.DataFrame) -> set[str]:
    train = set(images.filter(pl.col("protocol_split") == "train")["subject_id"])
    test = set(images.filter(pl.col("protocol_split") == "test")["subject_id"])
    return train & test


def test_test_split_is_the_test_file_and_no_identity_crosses(images):
    splits = split_official_protocol(images, 0.1, seed=3, n_images=None, unit="image", subset_seed=1)
    assert splits["test"].equals(images.filter(pl.col("protocol_split") == "test").sort("path"))
    subjects = {name: set(frame["subject_id"]) for name, frame in splits.items()}
    assert not (subjects["train"] & subjects["val"] or subjects["train"] & subjects["test"] or subjects["val"] & subjects["test"])
    crossing = expected_crossing(images)
    assert 10 <= len(crossing) <= 15  # a subject whose coin tosses all fell on one side does not cross
    # Train and val hold every train-file image except the crossing subjects' ones.
    pool = images.filter((pl.col("protocol_split") == "train") & ~pl.col("subject_id").is_in(list(crossing)))
    assert pl.concat([splits["train"], splits["val"]]).sort("path").equals(pool.sort("path"))
    assert abs(splits["val"].height - 0.1 * pool.height) <= 0.01 * pool.height
    assert abs((splits["val"]["label"] == 0).mean() - (pool["label"] == 0).mean()) <= 0.02


def test_crossing_subjects_are_listed(images):
    assert crossing_subjects(images) == sorted(expected_crossing(images))


@pytest.mark.parametrize("unit", ["image", "subject"])
def test_protocol_subset_draws_from_the_train_file_only(images, unit):
    splits = split_official_protocol(images, 0.2, seed=3, n_images=2000, unit=unit, subset_seed=1)
    assert splits["test"].height == images.filter(pl.col("protocol_split") == "test").height
    train_side = pl.concat([splits["train"], splits["val"]])
    assert train_side.height == 2000
    assert not train_side["subject_id"].is_in(sorted(expected_crossing(images))).any()
    assert abs(splits["val"].height - 400) <= 0.05 * 400


def test_protocol_subset_larger_than_the_train_file_is_an_error(images):
    with pytest.raises(DataError, match="train file only"):
        split_official_protocol(images, 0.1, seed=3, n_images=images.height, unit="image", subset_seed=1)


def test_missing_or_bad_protocol_column_is_an_error(images):
    with pytest.raises(DataError, match="no protocol_split column"):
        split_official_protocol(images.drop("protocol_split"), 0.1, seed=3, n_images=None, unit="image", subset_seed=1)
    bad = images.with_columns(pl.when(pl.col("path") == images["path"][7]).then(pl.lit("dev")).otherwise("protocol_split").alias("protocol_split"))
    with pytest.raises(DataError, match=f"'dev'.*{images['path'][7]}"):
        split_official_protocol(bad, 0.1, seed=3, n_images=None, unit="image", subset_seed=1)


def test_empty_sides_and_bad_fraction_are_errors(images):
    all_train = images.with_columns(pl.lit("train").alias("protocol_split"))
    with pytest.raises(DataError, match="test file lists no usable image"):
        split_official_protocol(all_train, 0.1, seed=3, n_images=None, unit="image", subset_seed=1)
    one_subject = images.filter(pl.col("subject_id") == images["subject_id"][0])
    both = one_subject.with_columns(pl.Series("protocol_split", ["train", "test"] * (one_subject.height // 2) + ["test"] * (one_subject.height % 2)))
    with pytest.raises(DataError, match="1 subjects are on both sides"):
        split_official_protocol(both, 0.1, seed=3, n_images=None, unit="image", subset_seed=1)
    with pytest.raises(ConfigError, match="split.val_fraction"):
        split_official_protocol(images, 1.0, seed=3, n_images=None, unit="image", subset_seed=1)


def test_run_split_under_a_protocol(images, tmp_path):
    path = tmp_path / "images.parquet"
    io.write_parquet(path, images)
    digests = []
    for run in ("a", "b"):
        out = {s: tmp_path / run / f"{s}.parquet" for s in SPLITS}
        report = run_split(path, **out, report=tmp_path / run / "report.json", protocol="intra_test", subset=SUBSET, split=SPLIT)
        digests.append([p.read_bytes() for p in out.values()] + [(tmp_path / run / "report.json").read_bytes()])
    assert digests[0] == digests[1]
    crossing = expected_crossing(images)
    train_file = images.filter(pl.col("protocol_split") == "train")
    assert report["protocol_name"] == "intra_test"
    assert report["protocol"]["crossing_subjects"] == len(crossing)
    assert report["protocol"]["crossing_images_removed"] == train_file.filter(pl.col("subject_id").is_in(list(crossing))).height
    assert report["protocol"]["test_file_images"] == images.height - train_file.height
    assert report["splits"]["test"]["target_fraction"] is None
    assert report["splits"]["val"]["target_fraction"] == 0.1
    assert abs(report["splits"]["val"]["fraction"] - 0.1) <= 0.01
    assert report["subset"]["available_images"] == train_file.height - report["protocol"]["crossing_images_removed"]
    assert json.loads((tmp_path / "a" / "report.json").read_text())["protocol"] == report["protocol"]
    for name in SPLITS:
        assert pl.read_parquet(tmp_path / "a" / f"{name}.parquet").columns == images.columns


def test_failed_protocol_split_writes_nothing(images, tmp_path):
    path = tmp_path / "images.parquet"
    io.write_parquet(path, images.drop("protocol_split"))
    out = {s: tmp_path / "out" / f"{s}.parquet" for s in SPLITS}
    with pytest.raises(DataError):
        run_split(path, **out, report=tmp_path / "out" / "report.json", protocol="protocol1", subset=SUBSET, split=SPLIT)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
