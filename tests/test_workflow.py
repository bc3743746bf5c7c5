"""The data and training stages through Snakemake on the tiny synthetic dataset."""

import json

import numpy as np
import polars as pl
import pytest
import torch
from conftest import new_workflow
from safetensors.torch import load_file

pytestmark = pytest.mark.workflow

SPLITS = ("train", "val", "test")
COLUMNS = ["path", "subject_id", "label", "spoof_type", "illumination", "environment", "official_split"]


@pytest.fixture(scope="module")
def trained(tiny_workflow):
    tiny_workflow.run("results/models/S0/summary.json", "results/models/S2/summary.json", "results/faces/test.npy")
    return tiny_workflow


def test_metadata_and_split_contracts(trained):
    images = pl.read_parquet(trained.path("results/metadata/images.parquet"))
    assert images.columns[: len(COLUMNS)] == COLUMNS
    assert {"box_x", "box_y", "box_w", "box_h"} <= set(images.columns)
    report = json.loads(trained.path("results/metadata/ingest_report.json").read_text())
    assert report["listed"] == 24 * 8 and report["usable"] == images.height
    splits = {s: pl.read_parquet(trained.path(f"results/splits/{s}.parquet")) for s in SPLITS}
    assert sum(f.height for f in splits.values()) == 150
    subjects = [set(splits[s]["subject_id"]) for s in SPLITS]
    assert not (subjects[0] & subjects[1]) and not (subjects[0] & subjects[2]) and not (subjects[1] & subjects[2])
    split_report = json.loads(trained.path("results/splits/split_report.json").read_text())
    assert {s: split_report["splits"][s]["images"] for s in SPLITS} == {s: f.height for s, f in splits.items()}
    for s in SPLITS:
        faces = np.load(trained.path(f"results/faces/{s}.npy"), mmap_mode="r")
        assert faces.shape == (splits[s].height, 24, 24, 3) and faces.dtype == np.uint8


def test_models_written_with_provenance(trained):
    for name in ("teacher", "S0", "S2"):
        folder = trained.path(f"results/models/{name}")
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["name"] == name and 1 <= summary["best_epoch"] <= 2
        assert set(summary["val_metrics"]) >= {"f1", "acer"}
        assert "torch" in json.dumps(summary["provenance"])
        weights = load_file(str(folder / "weights.safetensors"))
        assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
        history = pl.read_csv(folder / "history.csv")
        assert history.columns[:4] == ["epoch", "train_loss", "val_loss", "val_f1"] and history.height == summary["epochs_run"]
        assert not (folder / "resume").exists()
    s2 = json.loads(trained.path("results/models/S2/summary.json").read_text())
    assert s2["hyperparameters"]["alpha"] == 0.6 and s2["hyperparameters"]["temperature"] == 4.0
    assert trained.path("results/models/S2/weights.safetensors").read_bytes() != trained.path("results/models/S0/weights.safetensors").read_bytes()


def test_rerun_is_byte_identical(trained, tmp_path):
    weights = trained.path("results/models/S0/weights.safetensors").read_bytes()
    trained.run("results/models/S0/summary.json", "--forcerun", "train_student")
    assert trained.path("results/models/S0/weights.safetensors").read_bytes() == weights
    # A second directory from scratch (new synthetic data, ingest, split) gives the same bytes.
    fresh = new_workflow(tmp_path)
    fresh.run("splits")
    for name in (*[f"{s}.parquet" for s in SPLITS], "split_report.json"):
        assert fresh.path(f"results/splits/{name}").read_bytes() == trained.path(f"results/splits/{name}").read_bytes(), name


def test_split_report_target_by_name(trained):
    result = trained.run("-n", "splits")
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "override, message",
    [
        ("subset: {n_imagez: 3}\n", "n_imagez"),
        ("train: {batch_size: many}\n", "batch_size"),
        ("split: {fractions: {train: 0.8, val: 0.2, test: 0.1}}\n", "split.fractions must sum to 1"),
        ("dataset: {root: nowhere/celeba, synthetic: {enabled: false}}\n", "dataset.root: CelebA-Spoof not found at"),
        ("bogus_section: 1\n", "bogus_section"),
    ],
)
def test_bad_config_fails_at_parse_time_naming_the_key(tmp_path, override, message):
    workflow = new_workflow(tmp_path, [tmp_path / "bad.yaml"])
    (tmp_path / "bad.yaml").write_text(override)
    result = workflow.run("-n", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "make demo" in result.stdout + result.stderr or "root" not in message


def test_failing_ingest_leaves_no_output(tmp_path):
    workflow = new_workflow(tmp_path, [tmp_path / "strict.yaml"])
    (tmp_path / "strict.yaml").write_text("ingest: {on_missing_image: fail}\n")
    workflow.run("resources/tiny/celeba_spoof/metas/intra_test/train_label.json")
    labels = json.loads(workflow.path("resources/tiny/celeba_spoof/metas/intra_test/train_label.json").read_text())
    workflow.path("resources/tiny/celeba_spoof").joinpath(next(iter(labels))).unlink()
    result = workflow.run("results/metadata/images.parquet", check=False)
    assert result.returncode != 0
    assert "missing_image" in result.stderr and "on_missing_image" in result.stderr
    assert not workflow.path("results/metadata/images.parquet").exists()
    assert not workflow.path("results/metadata/ingest_report.json").exists()


@pytest.mark.parametrize("protocol", ["intra_test", "protocol2/test_on_low_quality_device"])
def test_official_protocol_runs_in_its_own_folder(tmp_path, protocol):
    workflow = new_workflow(tmp_path, [tmp_path / "protocol.yaml"])
    (tmp_path / "protocol.yaml").write_text(f"dataset: {{protocol: {protocol}}}\nsubset: {{n_images: null}}\n")
    workflow.run("splits")
    out = workflow.path(f"results/{protocol}")
    images = pl.read_parquet(out / "metadata/images.parquet")
    splits = {s: pl.read_parquet(out / f"splits/{s}.parquet") for s in SPLITS}
    # The test split is every usable image of the protocol's test file, whole.
    listed = json.loads(workflow.path(f"resources/tiny/celeba_spoof/metas/{protocol}/test_label.json").read_text())
    usable_test = set(images.filter(pl.col("protocol_split") == "test")["path"])
    assert set(splits["test"]["path"]) == usable_test and usable_test <= set(listed)
    # No identity in two splits; train and val come from the train file only.
    subjects = {s: set(f["subject_id"]) for s, f in splits.items()}
    assert not (subjects["train"] & subjects["val"]) and not (subjects["test"] & (subjects["train"] | subjects["val"]))
    assert set(pl.concat([splits["train"], splits["val"]])["protocol_split"]) == {"train"}
    report = json.loads((out / "splits/split_report.json").read_text())
    assert report["protocol_name"] == protocol and report["protocol"]["test_file_images"] == len(usable_test)
    # Another protocol's (or the paper's) outputs are elsewhere: nothing was written under results/splits.
    assert not workflow.path("results/splits").exists() and workflow.path(f"logs/{protocol}/split.log").is_file()
