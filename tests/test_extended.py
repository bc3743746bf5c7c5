"""Beyond the paper: random vs subject split, replicates statistics, leakage/cross-attack tables, workflow targets."""

import json
import math

import numpy as np
import polars as pl
import pytest

from fasflow.errors import ConfigError, DataError
from fasflow.extended import (
    cross_attack_table,
    leakage_table,
    paired_t,
    replicates_table,
    summarise_seeds,
    write_replicates,
)
from fasflow.splits import identity_overlap, split_images, split_subjects

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def fake_subset(n_subjects=30, per_subject=9, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        for i in range(per_subject):
            live = i < per_subject // 3
            rows.append(
                {
                    "path": f"Data/train/{s}/{'live' if live else 'spoof'}/{i:04d}.jpg",
                    "subject_id": str(1000 + s),
                    "label": 0 if live else 1,
                    "spoof_type": 0 if live else int(rng.integers(1, 11)),
                }
            )
    return pl.DataFrame(rows)


def test_random_split_shares_identities_and_subject_split_does_not():
    subset = fake_subset()
    random = split_images(subset, FRACTIONS, seed=1)
    disjoint = split_subjects(subset, FRACTIONS, seed=1)
    # Same images either way, each exactly once.
    for splits in (random, disjoint):
        paths = pl.concat([f.select("path") for f in splits.values()])["path"]
        assert paths.n_unique() == subset.height == len(paths)
    assert identity_overlap(disjoint["train"], disjoint["test"])["test_subjects_seen_in_train"] == 0
    overlap = identity_overlap(random["train"], random["test"])
    assert overlap["fraction_test_subjects_seen"] > 0.8
    assert overlap["test_images_of_seen_subjects"] == overlap["test_images"] * overlap["fraction_test_images_seen"]
    # Fractions and class shares follow the targets.
    assert abs(random["train"].height / subset.height - 0.8) < 0.03
    live = [f["label"].eq(0).mean() for f in random.values()]
    assert max(live) - min(live) < 0.1
    # Seeded: the same seed gives the same split, another seed another one.
    assert split_images(subset, FRACTIONS, seed=1)["test"].equals(random["test"])
    assert not split_images(subset, FRACTIONS, seed=2)["test"].equals(random["test"])


def test_replicates_statistics_by_hand():
    # f1 of S0 per seed 0.90, 0.92, 0.94: mean 0.92, SD 0.02, t(0.975, 2) = 4.302653.
    per_seed = {
        "S0": {1: {"f1": 0.90}, 2: {"f1": 0.92}, 3: {"f1": 0.94}},
        "S1": {1: {"f1": 0.91}, 2: {"f1": 0.95}, 3: {"f1": 0.96}},
    }
    numbers, text = replicates_table(per_seed, "S0", metrics=("f1",))
    s0 = numbers.filter(pl.col("scenario") == "S0").row(0, named=True)
    assert s0["mean"] == pytest.approx(0.92)
    assert s0["sd"] == pytest.approx(0.02)
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert (s0["ci_low"], s0["ci_high"]) == pytest.approx((0.92 - half, 0.92 + half), abs=1e-6)
    assert [s0["seed_1"], s0["seed_2"], s0["seed_3"]] == [0.90, 0.92, 0.94]
    # S1 - S0 per seed: 0.01, 0.03, 0.02 -> mean 0.02, SD 0.01, t = 0.02 / (0.01 / sqrt 3) = 2 sqrt 3,
    # and with 2 df the two-sided p = 1 - t / sqrt(t^2 + 2) = 1 - sqrt(12/14).
    s1 = numbers.filter(pl.col("scenario") == "S1").row(0, named=True)
    assert s1["vs_S0_mean_diff"] == pytest.approx(0.02)
    assert s1["vs_S0_t"] == pytest.approx(2 * math.sqrt(3))
    assert s1["vs_S0_df"] == 2
    assert s1["vs_S0_p_value"] == pytest.approx(1 - math.sqrt(12 / 14))
    assert text.filter(pl.col("scenario") == "S1")["paired t (df)"][0] == "3.46 (2)"


def test_replicates_edge_cases():
    one = summarise_seeds([0.5])
    assert one["mean"] == 0.5 and math.isnan(one["sd"]) and math.isnan(one["ci_low"])
    # Identical differences: no variance, no test (not a fake p = 0).
    same = paired_t([0.6, 0.7], [0.5, 0.6])
    assert same["mean_diff"] == pytest.approx(0.1) and math.isnan(same["p_value"])
    with pytest.raises(Exception, match="seeds"):
        replicates_table({"S0": {1: {"f1": 0.9}, 2: {"f1": 0.9}}, "S1": {1: {"f1": 0.9}}}, "S0", metrics=("f1",))


def test_replicates_note_says_what_varies(tmp_path):
    paths = {}
    for name, values in (("S0", (0.90, 0.92)), ("S1", (0.91, 0.95))):
        paths[name] = {}
        for seed, f1 in zip((1, 2), values):
            paths[name][seed] = tmp_path / f"{name}_{seed}.json"
            paths[name][seed].write_text(json.dumps({"f1": f1, "accuracy": f1, "roc_auc": f1, "apcer": 0.1, "bpcer": 0.1, "acer": 0.1}))
    csv, md = tmp_path / "r.csv", tmp_path / "r.md"
    write_replicates(paths, "S0", 0.95, csv, md, tuned=["S1"], retune=False)
    text = md.read_text()
    assert "Tuned scenarios (S1) reuse the main study's Optuna parameters" in text and "replicates.retune: false" in text
    assert "threshold 0.5" in text
    write_replicates(paths, "S0", 0.95, csv, md, tuned=["S1"], retune=True)
    assert "re-ran their Optuna study for every seed" in md.read_text()
    write_replicates(paths, "S0", 0.95, csv, md, tuned=[], retune=False)
    assert "only the training seed varies" in md.read_text()


def fake_predictions(n_subjects, live_err, spoof_err, seed, spoof_type=1, prefix="a"):
    """Per subject 4 live + 4 spoof images; a share of each class misclassified."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        for i in range(8):
            label = int(i >= 4)
            wrong = rng.random() < (spoof_err if label else live_err)
            score = (0.2 if label else 0.8) if wrong else (0.9 if label else 0.1)
            rows.append({"path": f"{prefix}{s}_{i}", "subject_id": str(s), "label": label,
                         "spoof_type": spoof_type if label else 0, "score": score})
    return pl.DataFrame(rows)


def test_leakage_table_difference_and_interval():
    disjoint = fake_predictions(40, 0.2, 0.2, seed=0)
    random = fake_predictions(40, 0.0, 0.0, seed=1, prefix="b")
    overlap = {"disjoint": {"fraction_test_subjects_seen": 0.0}, "random": {"fraction_test_subjects_seen": 1.0}}
    numbers, text = leakage_table({"S0": {"disjoint": [disjoint], "random": [random]}}, overlap, [2024], n_resamples=300, seed=0)
    acer = numbers.filter(pl.col("metric") == "acer").row(0, named=True)
    assert acer["random"] == 0.0
    assert acer["difference"] == pytest.approx(-acer["disjoint"])
    assert acer["difference_ci_low"] <= acer["difference"] <= acer["difference_ci_high"] < 0
    assert acer["disjoint_ci_low"] <= acer["disjoint"] <= acer["disjoint_ci_high"]
    assert set(numbers["metric"]) == {"acer", "apcer", "bpcer", "f1", "roc_auc"}


def test_leakage_table_averages_training_seeds_on_shared_resamples():
    overlap = {"disjoint": {"fraction_test_subjects_seen": 0.0}, "random": {"fraction_test_subjects_seen": 1.0}}
    disjoint = fake_predictions(40, 0.2, 0.2, seed=0)
    random = fake_predictions(40, 0.05, 0.05, seed=1, prefix="b")
    # A second training seed that got every random-split image right, and a copy of the first disjoint run.
    random_lucky = random.with_columns(pl.when(pl.col("label") == 1).then(0.9).otherwise(0.1).alias("score"))
    one, _ = leakage_table({"S0": {"disjoint": [disjoint], "random": [random]}}, overlap, [1], n_resamples=200, seed=3)
    two, text = leakage_table(
        {"S0": {"disjoint": [disjoint, disjoint], "random": [random, random_lucky]}}, overlap, [1, 2], n_resamples=200, seed=3
    )
    a1 = one.filter(pl.col("metric") == "acer").row(0, named=True)
    a2 = two.filter(pl.col("metric") == "acer").row(0, named=True)
    assert a2["random_seed_2"] == 0.0 and a1["random"] > 0 and a2["random_seed_1"] == pytest.approx(a1["random"])
    assert a2["random"] == pytest.approx((a2["random_seed_1"] + a2["random_seed_2"]) / 2)
    assert a2["training_seeds"] == "1 2"
    # Two identical runs on the same resamples give exactly the one run's interval: the seeds share resamples.
    assert (a2["disjoint_ci_low"], a2["disjoint_ci_high"]) == (a1["disjoint_ci_low"], a1["disjoint_ci_high"])
    assert text.row(0, named=True)["per seed"] == f"{a2['random_seed_1'] - a2['disjoint_seed_1']:+.3f}, {-a2['disjoint_seed_2']:+.3f}"


def test_leakage_table_refuses_seeds_on_different_test_images():
    overlap = {"disjoint": {"fraction_test_subjects_seen": 0.0}, "random": {"fraction_test_subjects_seen": 1.0}}
    disjoint = fake_predictions(10, 0.2, 0.2, seed=0)
    other = fake_predictions(10, 0.2, 0.2, seed=0, prefix="x")
    random = fake_predictions(10, 0.0, 0.0, seed=1, prefix="b")
    with pytest.raises(DataError, match="S0 disjoint: the training seeds' predictions cover different test images"):
        leakage_table({"S0": {"disjoint": [disjoint, other], "random": [random, random]}}, overlap, [1, 2], n_resamples=10)
    with pytest.raises(DataError, match="S0 random: 1 prediction files for 2 training seeds"):
        leakage_table({"S0": {"disjoint": [disjoint, disjoint], "random": [random]}}, overlap, [1, 2], n_resamples=10)


def test_cross_attack_table_cuts_to_live_plus_type():
    seen = pl.concat([fake_predictions(10, 0.0, 0.0, 0, spoof_type=9), fake_predictions(10, 0.0, 1.0, 1, spoof_type=1, prefix="b")])
    unseen = seen.with_columns(
        pl.when(pl.col("spoof_type") == 9).then(0.1).otherwise(pl.col("score")).alias("score")
    )
    numbers, _ = cross_attack_table({"phone": unseen}, seen, n_resamples=50)
    row = numbers.row(0, named=True)
    # Only phone attacks count (the photo attacks, all missed, are cut away).
    assert row["apcer_seen"] == 0.0 and row["apcer_unseen"] == 1.0
    assert row["test_attacks"] == 40 and row["test_live"] == 80


@pytest.mark.workflow
def test_extended_targets_through_snakemake(tiny_workflow):
    wf = tiny_workflow
    wf.run("replicates", "leakage", "cross_attack")
    for stem in ("replicates", "leakage", "cross_attack"):
        assert wf.path(f"results/tables/{stem}.csv").stat().st_size > 0
        assert wf.path(f"results/tables/{stem}.md").read_text().startswith("# ")
    assert wf.path("results/figures/replicates.png").stat().st_size > 0

    # Replicates: the main seed reuses the main models; the other seed has its own folder.
    table = pl.read_csv(wf.path("results/tables/replicates.csv"))
    assert set(table["scenario"]) == {"S0", "S2"} and table.height == 2 * 6
    main = json.loads(wf.path("results/metrics/S0.json").read_text())
    f1 = table.filter((pl.col("scenario") == "S0") & (pl.col("metric") == "f1")).row(0, named=True)
    # The CSV keeps 6 decimals, so compare to within its rounding.
    assert f1["seed_2024"] == pytest.approx(main["f1"], abs=1e-6)
    other = json.loads(wf.path("results/replicates/seed2025/models/S0/summary.json").read_text())
    assert other["seed"] == 2025 and other["variant"]["name"] == "replicates/seed2025"
    assert not wf.path("results/replicates/seed2024").exists()
    assert f1["mean"] == pytest.approx((f1["seed_2024"] + f1["seed_2025"]) / 2, abs=1e-6)

    # Leakage: the random split shares identities, the study's split does not.
    report = json.loads(wf.path("results/leakage/splits/split_report.json").read_text())
    assert report["subject_overlap"]["test_subjects_seen_in_train"] > 0
    leak = pl.read_csv(wf.path("results/tables/leakage.csv"))
    assert leak["test_subjects_seen_disjoint"].to_list() == [0.0] * 5
    assert set(leak["metric"]) == {"acer", "apcer", "bpcer", "f1", "roc_auc"}
    # Two training seeds per side: the second's disjoint model is the S0 replicate, its random one its own.
    acer = leak.filter(pl.col("metric") == "acer").row(0, named=True)
    replicate = json.loads(wf.path("results/replicates/seed2025/metrics/S0.json").read_text())
    assert acer["disjoint_seed_2024"] == pytest.approx(main["acer"], abs=1e-6)
    assert acer["disjoint_seed_2025"] == pytest.approx(replicate["acer"], abs=1e-6)
    assert acer["disjoint"] == pytest.approx((acer["disjoint_seed_2024"] + acer["disjoint_seed_2025"]) / 2, abs=1e-6)
    second = json.loads(wf.path("results/leakage/seed2025/models/S0/summary.json").read_text())
    assert second["seed"] == 2025 and second["variant"]["name"] == "leakage/seed2025"
    assert not wf.path("results/leakage/seed2024").exists()

    # Cross-attack: the model never saw a photo attack, in training or validation.
    cross = pl.read_csv(wf.path("results/tables/cross_attack.csv"))
    assert cross["spoof_type"].to_list() == ["photo"]
    summary = json.loads(wf.path("results/cross_attack/without_photo/models/S0/summary.json").read_text())
    assert summary["variant"]["excluded_spoof_type"] == "photo"
    train = pl.read_parquet(wf.path("results/faces/train.parquet"))
    assert summary["variant"]["train_images"] == int((train["spoof_type"] != 1).sum())
