"""Tables and figures written from fabricated predictions and model summaries."""

from __future__ import annotations

import json

import polars as pl
import pytest
from eval_fakes import SCENARIOS, fake_predictions, same_images, summary, write_history

from fasflow import figures, tables
from fasflow.errors import DataError
from fasflow.metrics import evaluate, read_predictions


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Predictions and metrics JSON of S0..S3 and the teacher on the same fabricated images."""
    root = tmp_path_factory.mktemp("eval")
    base = fake_predictions(seed=1)
    preds, metrics = {}, {}
    for i, name in enumerate(SCENARIOS + ["teacher"]):
        test = base if name == "S0" else same_images(base, seed=10 + i)
        val = same_images(fake_predictions(seed=2), seed=20 + i)
        preds[name] = root / f"pred_{name}.parquet"
        test.write_parquet(preds[name])
        metrics[name] = root / f"{name}.json"
        metrics[name].write_text(json.dumps(evaluate(test, val, n_resamples=100, seed=3)))
    return root, {k: str(v) for k, v in preds.items()}, {k: str(v) for k, v in metrics.items()}


def test_format_ci():
    assert tables.fmt_ci(0.99433, 0.99, 0.996) == "0.9943 [0.9900, 0.9960]"
    assert tables.fmt_ci(0.5, None, None) == "0.5000"
    assert tables.fmt(None) == "-"


def test_table2_columns_cis_paired_bootstrap_and_mcnemar(evaluated, tmp_path):
    _, preds, metrics = evaluated
    csv, md = tmp_path / "t2.csv", tmp_path / "t2.md"
    tables.write_table2(metrics, preds, "S0", 1000, 5, 0.95, csv, md)
    df = pl.read_csv(csv)
    for column in ("Accuracy", "Precision", "Recall", "F1-score", "ROC-AUC"):
        assert column in df.columns
        assert (df[f"{column}_ci_lo"] <= df[column]).all() and (df[column] <= df[f"{column}_ci_hi"]).all()
    assert df["Scenario"].to_list() == SCENARIOS + ["teacher"]
    mcnemar = "McNemar p vs S0 (image-level, ignores subject clustering)"
    p = df[mcnemar].to_list()
    assert p[0] is None and all(0 < v <= 1 for v in p[1:])
    # the paired bootstrap's F1 and ROC-AUC rows, the same numbers as the comparisons table
    tables.write_comparisons(preds, "S0", 1000, 5, 0.95, tmp_path / "c.csv", tmp_path / "c.md")
    comparisons = pl.read_csv(tmp_path / "c.csv")
    for column, key in (("F1", "f1"), ("ROC-AUC", "roc_auc")):
        assert df[f"{column} - S0"][0] is None
        for name in SCENARIOS[1:] + ["teacher"]:
            row = comparisons.filter((pl.col("model") == name) & (pl.col("metric") == key)).row(0, named=True)
            got = df.filter(pl.col("Scenario") == name).row(0, named=True)
            assert got[f"{column} - S0"] == pytest.approx(row["difference"], abs=1e-6)
            assert got[f"{column} - S0_p_holm"] == pytest.approx(row["p_holm"], abs=1e-6)
    text = md.read_text()
    assert "| Scenario | Accuracy | Precision | Recall | F1-score | ROC-AUC |" in text
    assert "F1 - S0 [CI], Holm p (paired subject bootstrap)" in text and "p_Holm" in text
    assert "threshold 0.5" in text and "image-level, ignores subject clustering" in text
    assert "20 comparisons (4 model(s) x 5 metrics" in text
    s0 = json.loads(open(metrics["S0"]).read())
    lo, hi = s0["ci"]["intervals"]["f1"]
    assert f"{s0['f1']:.4f} [{lo:.4f}, {hi:.4f}]" in text


def test_comparisons_table(evaluated, tmp_path):
    _, preds, _ = evaluated
    noisy = same_images(fake_predictions(seed=1), seed=99, noise=0.6)
    noisy_path = tmp_path / "noisy.parquet"
    noisy.write_parquet(noisy_path)
    paths = {"S0": preds["S0"], "S1": preds["S1"], "noisy": str(noisy_path)}
    tables.write_comparisons(paths, "S0", 1000, 5, 0.95, tmp_path / "c.csv", tmp_path / "c.md")
    df = pl.read_csv(tmp_path / "c.csv")
    assert df.height == 2 * 5 and df.columns[:4] == ["model", "metric", "S0", "model_value"]
    assert ((df["difference"] - (df["model_value"] - df["S0"])).abs() < 2e-6).all()  # CSV keeps 6 decimals
    assert (df["p_holm"] >= df["p_value"] - 1e-12).all()
    # far noisier scores: more errors than S0, beyond chance after Holm
    acer = df.filter((pl.col("model") == "noisy") & (pl.col("metric") == "acer")).row(0, named=True)
    assert acer["difference"] > 0 and acer["difference_ci_lo"] > 0 and acer["differs"] == "yes"
    assert (df["differs"] == "yes").to_list() == (df["p_holm"] < 0.05).to_list()
    text = (tmp_path / "c.md").read_text()
    assert "10 comparisons (2 model(s) x 5 metrics" in text and "Caution" not in text
    # too few resamples for Holm to decide anything: the note says so
    tables.write_comparisons(paths, "S0", 200, 5, 0.95, tmp_path / "c2.csv", tmp_path / "c2.md")
    assert "at least 400 resamples (evaluate.bootstrap_n)" in (tmp_path / "c2.md").read_text()
    # bootstrap off: an empty table that says why, not a failed study
    tables.write_comparisons(paths, "S0", 0, 5, 0.95, tmp_path / "c3.csv", tmp_path / "c3.md")
    assert pl.read_csv(tmp_path / "c3.csv").height == 0
    assert "No paired comparisons: evaluate.bootstrap_n is 0" in (tmp_path / "c3.md").read_text()
    assert "at least 400" in (tmp_path / "c3.md").read_text()
    with pytest.raises(DataError, match="reference model 'S9'"):
        tables.write_comparisons(paths, "S9", 100, 5, 0.95, tmp_path / "c4.csv", tmp_path / "c4.md")
    assert not (tmp_path / "c4.csv").exists()


def test_table3_operating_points_and_apcer_per_type(evaluated, tmp_path):
    _, _, metrics = evaluated
    tables.write_table3(metrics, [0.01, 0.05, 0.10], tmp_path / "t3.csv", tmp_path / "t3.md")
    df = pl.read_csv(tmp_path / "t3.csv")
    for column in ("APCER", "BPCER", "ACER", "APCER_PAIS", "ACER_ISO", "EER", "HTER", "BPCER@APCER=5%"):
        assert column in df.columns, column
    assert "APCER_ci_lo" in df.columns and "ACER_ci_hi" in df.columns
    assert ((df["ACER"] - (df["APCER"] + df["BPCER"]) / 2).abs() < 1e-6).all()
    assert (df["APCER_PAIS"] >= df["APCER"]).all()
    s1 = json.loads(open(metrics["S1"]).read())
    row = df.filter(pl.col("Scenario") == "S1").row(0, named=True)
    for rate in ("1%", "5%", "10%"):
        assert row[f"BPCER@APCER={rate} APCER reached"] == pytest.approx(s1["bpcer_at_apcer"][rate]["apcer"], abs=1e-6)
        assert row[f"BPCER@APCER_PAIS={rate}"] == pytest.approx(s1["bpcer_at_apcer_pais"][rate]["bpcer"], abs=1e-6)
        assert row[f"BPCER@APCER_PAIS={rate} APCER_PAIS reached"] == pytest.approx(s1["bpcer_at_apcer_pais"][rate]["apcer_pais"], abs=1e-6)
    text = (tmp_path / "t3.md").read_text()
    point = s1["bpcer_at_apcer"]["5%"]
    assert f"{point['bpcer']:.4f} ({point['apcer']:.4f})" in text
    assert "BPCER@APCER_PAIS=5% (APCER_PAIS reached)" in text and "nearest ROC point" in text
    assert "pooled APCER (all attacks together)" in text and "threshold 0.5" in text
    tables.write_apcer_per_type(metrics, tmp_path / "ty.csv", tmp_path / "ty.md")
    ty = pl.read_csv(tmp_path / "ty.csv")
    assert ty.columns[:11] == ["Scenario"] + tables.SPOOF_TYPE_NAMES
    # 3D masks never occur in the fabricated test split: empty cells, not a crash
    assert ty["3d_mask"].null_count() == ty.height
    assert "3d_mask (n=0)" in (tmp_path / "ty.md").read_text()


def test_protocol_table(evaluated, tmp_path):
    _, _, metrics = evaluated
    tables.write_protocol_table(metrics, "intra_test", tmp_path / "p.csv", tmp_path / "p.md")
    df = pl.read_csv(tmp_path / "p.csv")
    assert df["Scenario"].to_list() == SCENARIOS + ["teacher"]
    for column in ("APCER", "BPCER", "ACER", "ROC-AUC", "EER"):
        assert column in df.columns
    s2 = json.loads(open(metrics["S2"]).read())
    row = df.filter(pl.col("Scenario") == "S2").row(0, named=True)
    for key, rate in (("0.01", "1%"), ("0.005", "0.5%"), ("0.001", "0.1%")):
        assert row[f"TPR@FPR={rate}"] == pytest.approx(s2["tpr_at_fpr"][key], abs=1e-6)
        assert row[f"TPR@FPR={rate}_ci_lo"] <= row[f"TPR@FPR={rate}"] <= row[f"TPR@FPR={rate}_ci_hi"]
        assert row[f"TPR@FPR={rate} BPCER reached"] == pytest.approx(s2["tpr_at_fpr_operating_points"][key]["bpcer"], abs=1e-6)
        fixed = s2["tpr_at_fpr_val_threshold"][key]
        assert row[f"TPR@FPR={rate} (val threshold)"] == pytest.approx(fixed["tpr"], abs=1e-6)
        assert row[f"TPR@FPR={rate} (val threshold) BPCER reached"] == pytest.approx(fixed["bpcer"], abs=1e-6)
    text = (tmp_path / "p.md").read_text()
    assert "(protocol: intra_test)" in text and "Same protocol as the reference" in text
    assert "APCER 2.29%, BPCER 0.96%, ACER 1.63%, AUC 0.9989" in text
    assert "TPR@FPR=1% 98.9%, TPR@FPR=0.5% 97.3%, TPR@FPR=0.1% 87.3%" in text
    tables.write_protocol_table(metrics, "paper", tmp_path / "q.csv", tmp_path / "q.md")
    assert "not a like-for-like comparison" in (tmp_path / "q.md").read_text()


def test_table1_reads_hyperparameters_actually_used(tmp_path):
    summaries = {
        "S0": summary("S0"),
        "S1": summary("S1", lr=9.73e-5, weight_decay=6.62e-4, dropout=0.313),
        "S2": summary("S2", distill=True),
        "S3": summary("S3", distill=True, lr=2.6e-5, alpha=0.788, temperature=3.069),
    }
    scenarios = {
        "S0": {"tune": False, "distill": False},
        "S1": {"tune": True, "distill": False},
        "S2": {"tune": False, "distill": True},
        "S3": {"tune": True, "distill": True},
    }
    numbers, text = tables.table1_configuration(summaries, scenarios, {}, {"n_trials": 10, "patience": 2})
    assert numbers["Learning rate"].to_list() == [1e-4, 9.73e-5, 1e-4, 2.6e-5]
    assert numbers["Alpha"].to_list() == [None, None, 0.6, 0.788]
    assert numbers["Optuna trials"].to_list() == [None, 10, None, 10]
    assert text["Early stopping patience"].to_list() == ["5", "2 in trials / 5 final", "5", "2 in trials / 5 final"]
    assert text["Learning rate"][1] == "9.73e-05" and text["Dropout"][1] == "0.313"
    # no tune section in the config yet: trials shown as "-"
    _, text = tables.table1_configuration(summaries, scenarios, {}, None)
    assert text["Optuna trials"].to_list() == ["-", "-", "-", "-"]


def test_write_table1_files(tmp_path):
    paths = {}
    for name in ("S0", "S1"):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(summary(name)))
    scenarios = {"S0": {"tune": False}, "S1": {"tune": True}}
    tables.write_table1(paths, scenarios, {"S1": tmp_path / "missing.json"}, {}, tmp_path / "t1.csv", tmp_path / "t1.md")
    df = pl.read_csv(tmp_path / "t1.csv")
    assert df.columns[:9] == [
        "Scenario", "Optimizer", "Learning rate", "Weight decay", "Dropout", "Alpha", "Temperature",
        "Optuna trials", "Early stopping patience",
    ]
    assert "AdamW" in (tmp_path / "t1.md").read_text()


def test_missing_metrics_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nope.json"):
        tables.write_table3({"S0": tmp_path / "nope.json"}, [0.05], tmp_path / "a.csv", tmp_path / "a.md")
    assert not (tmp_path / "a.csv").exists()


def test_figures_are_written(evaluated, tmp_path):
    _, preds, metrics = evaluated
    loaded = tables.load_metrics(metrics)
    for draw in (figures.confusion_matrices, figures.comparison_bars, figures.apcer_heatmap):
        paths = [tmp_path / f"{draw.__name__}.png", tmp_path / f"{draw.__name__}.pdf"]
        draw(loaded, paths)
        assert all(p.stat().st_size > 1000 for p in paths), draw.__name__
        assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    predictions = {name: read_predictions(path) for name, path in preds.items()}
    for draw in (figures.roc_curves, figures.det_curves):
        paths = [tmp_path / f"{draw.__name__}.png", tmp_path / f"{draw.__name__}.svg"]
        draw(predictions, paths)
        assert b"<svg" in paths[1].read_bytes()
    write_history(tmp_path / "history.csv")
    (tmp_path / "summary.json").write_text(json.dumps(summary("S0")))
    paths = [tmp_path / "train.png", tmp_path / "train.pdf"]
    figures.write_training_curves(tmp_path / "history.csv", tmp_path / "summary.json", "S0", paths)
    assert all(p.stat().st_size > 1000 for p in paths)
    assert not list(tmp_path.glob(".*.tmp"))


def test_training_curves_reject_incomplete_history(tmp_path):
    (tmp_path / "h.csv").write_text("epoch,train_loss\n1,0.5\n")
    with pytest.raises(DataError, match="val_loss"):
        figures.write_training_curves(tmp_path / "h.csv", None, "S0", [tmp_path / "x.png"])
    assert not (tmp_path / "x.png").exists()
