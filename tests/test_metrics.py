"""Metric formulas, thresholds, bootstrap and McNemar against hand-computed cases and the paper."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from fasflow.cli import main
from fasflow.errors import DataError
from fasflow.metrics import (
    BENCHMARK_FPRS,
    BOOTSTRAP_METRICS,
    _ResampledScores,
    benchmark_threshold,
    bootstrap_intervals,
    eer,
    evaluate,
    fpr_key,
    mcnemar_exact,
    metrics_at_threshold,
    paired_mcnemar,
    threshold_at_apcer,
    threshold_at_apcer_pais,
    tpr_at_fpr,
    weighted_roc_auc,
)


def frame(labels, scores, spoof_types=None, subjects=None) -> pl.DataFrame:
    n = len(labels)
    if spoof_types is None:
        spoof_types = [1 if y else 0 for y in labels]
    if subjects is None:
        subjects = [str(i) for i in range(n)]
    return pl.DataFrame(
        {
            "path": [f"img{i}.png" for i in range(n)],
            "subject_id": [str(s) for s in subjects],
            "label": list(labels),
            "spoof_type": list(spoof_types),
            "score": [float(s) for s in scores],
            "pred": [int(s >= 0.5) for s in scores],
        }
    )


def synthetic(n_subjects: int, per_subject: int = 10, seed: int = 0, flip: float = 0.1) -> pl.DataFrame:
    """Subjects with correlated errors: each subject has its own error propensity."""
    rng = np.random.default_rng(seed)
    subjects = np.repeat(np.arange(n_subjects), per_subject)
    labels = (rng.random(subjects.size) < 0.67).astype(int)
    propensity = rng.beta(1, 1 / flip - 1, n_subjects)[subjects]
    wrong = rng.random(subjects.size) < propensity
    clean = np.where(labels == 1, rng.uniform(0.6, 1.0, subjects.size), rng.uniform(0.0, 0.4, subjects.size))
    scores = np.where(wrong, 1.0 - clean, clean)
    types = np.where(labels == 1, rng.integers(1, 11, subjects.size), 0)
    return frame(labels, scores, types, subjects)


# --- hand-computed case -------------------------------------------------------------------

# live: 0.1 0.5 0.7 0.2  -> 0.5 (tie) and 0.7 rejected: fp 2, tn 2
# spoof photo(1): 0.9 0.5 0.3, poster(2): 0.4 0.8, phone(9): 0.95 -> 0.3 and 0.4 accepted: fn 2, tp 4
HAND_LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
HAND_SCORES = [0.1, 0.5, 0.7, 0.2, 0.9, 0.5, 0.3, 0.4, 0.8, 0.95]
HAND_TYPES = [0, 0, 0, 0, 1, 1, 1, 2, 2, 9]


def test_hand_computed_metrics_with_ties_at_threshold():
    m = metrics_at_threshold(np.array(HAND_LABELS), np.array(HAND_SCORES), 0.5, np.array(HAND_TYPES))
    assert m["confusion_matrix"]["matrix"] == [[2, 2], [2, 4]]
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["precision"] == pytest.approx(4 / 6)
    assert m["recall"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["apcer"] == pytest.approx(1 / 3)
    assert m["bpcer"] == pytest.approx(0.5)
    assert m["acer"] == pytest.approx(5 / 12)
    assert m["apcer_per_type"] == pytest.approx({"photo": 1 / 3, "poster": 0.5, "phone": 0.0})
    assert m["apcer_pais"] == pytest.approx(0.5)
    assert m["acer_iso"] == pytest.approx(0.5)
    # recall is 1 - APCER when spoof is the positive class
    assert m["recall"] == pytest.approx(1 - m["apcer"])


def test_tie_rule_score_equal_to_threshold_is_spoof():
    m = metrics_at_threshold(np.array([0, 1]), np.array([0.5, 0.5]), 0.5)
    assert m["confusion_matrix"]["fp"] == 1 and m["confusion_matrix"]["tp"] == 1
    m = metrics_at_threshold(np.array([0, 1]), np.array([0.5, 0.5]), np.nextafter(0.5, 1))
    assert m["confusion_matrix"]["tn"] == 1 and m["confusion_matrix"]["fn"] == 1


def test_absent_spoof_type_is_absent_not_a_crash():
    m = metrics_at_threshold(np.array(HAND_LABELS), np.array(HAND_SCORES), 0.5, np.array(HAND_TYPES))
    assert "a4" not in m["apcer_per_type"] and "3d_mask" not in m["apcer_per_type"]
    # no spoof at all: pooled and per-type APCER undefined, nothing raises
    m = metrics_at_threshold(np.array([0, 0]), np.array([0.2, 0.7]), 0.5, np.array([0, 0]))
    assert m["apcer_per_type"] == {}
    assert math.isnan(m["apcer"]) and math.isnan(m["apcer_pais"]) and m["bpcer"] == 0.5
    result = evaluate(frame([0, 0], [0.2, 0.7]), n_resamples=20)
    assert result["apcer"] is None and result["roc_auc"] is None and result["bpcer"] == 0.5


def test_roc_auc_matches_sklearn_with_ties():
    df = synthetic(30, seed=3)
    df = df.with_columns((pl.col("score") * 10).round() / 10)  # many ties
    result = evaluate(df)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(df["label"], df["score"]))


def test_weighted_auc_matches_sklearn_sample_weight():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 1)  # ties
    weights = rng.integers(0, 4, (3, 200))
    got = weighted_roc_auc(labels, scores, weights)
    want = [roc_auc_score(labels, scores, sample_weight=w) for w in weights]
    assert got == pytest.approx(want)


def test_eer_hand_computed():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.6, 0.7, 0.8])
    # threshold 0.4: spoof 0.35 accepted (APCER 1/4), live 0.4 rejected (BPCER 1/4)
    value, thr = eer(labels, scores)
    assert value == pytest.approx(0.25) and thr == pytest.approx(0.4)
    # perfectly separated: EER 0 with a threshold that separates
    value, thr = eer(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert value == 0.0 and 0.2 < thr <= 0.8


def test_threshold_at_apcer_set_on_validation():
    labels = np.array([1] * 10 + [0] * 5)
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.0, 0.05, 0.15, 0.25, 0.35])
    thr = threshold_at_apcer(labels, scores, 0.10)  # one spoof of ten may be accepted
    assert thr == pytest.approx(0.2)
    assert metrics_at_threshold(labels, scores, thr)["apcer"] == pytest.approx(0.1)
    assert metrics_at_threshold(labels, scores, thr)["bpcer"] == pytest.approx(2 / 5)
    assert threshold_at_apcer(labels, scores, 0.05) == pytest.approx(0.1)  # no spoof may pass
    assert threshold_at_apcer(labels, scores, 0.01) == pytest.approx(0.1)


def test_thresholds_come_from_validation_not_test():
    val = frame([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    test = frame([0, 0, 1, 1], [0.25, 0.6, 0.65, 0.95])
    r = evaluate(test, val)
    val_thr = r["val"]["eer_threshold"]
    assert 0.3 < val_thr <= 0.7
    # the test metrics at the validation threshold, not the test's own EER threshold
    expected = metrics_at_threshold(
        test["label"].to_numpy(), test["score"].to_numpy(), val_thr, test["spoof_type"].to_numpy()
    )
    assert r["at_val_eer"]["apcer"] == expected["apcer"]
    assert r["at_val_eer"]["bpcer"] == expected["bpcer"]
    assert r["hter"] == pytest.approx((expected["apcer"] + expected["bpcer"]) / 2)
    assert set(r["bpcer_at_apcer"]) == {"1%", "5%", "10%"}


# --- the paper's arithmetic ---------------------------------------------------------------

# (live rejected, spoof accepted) per scenario, and the values of the paper's Tables 2 and 3.
PAPER = {
    "S0": ((12, 22), dict(accuracy=0.9943, precision=0.9970, recall=0.9945, f1=0.9958, apcer=0.0055, bpcer=0.0061, acer=0.0058)),
    "S1": ((19, 17), dict(accuracy=0.9940, precision=0.9953, recall=0.9958, f1=0.9955, apcer=0.0042, bpcer=0.0096, acer=0.0069)),
    "S2": ((22, 14), dict(accuracy=0.9940, precision=0.9946, recall=0.9965, f1=0.9955, apcer=0.0035, bpcer=0.0112, acer=0.0073)),
    "S3": ((32, 20), dict(accuracy=0.9913, precision=0.9921, recall=0.9950, f1=0.9936, apcer=0.0050, bpcer=0.0162, acer=0.0106)),
}


def paper_test_set(live_rejected: int, spoof_accepted: int) -> pl.DataFrame:
    n_live, n_spoof = 1971, 4029
    live = np.full(n_live, 0.1)
    live[:live_rejected] = 0.9
    spoof = np.full(n_spoof, 0.9)
    spoof[:spoof_accepted] = 0.1
    labels = np.r_[np.zeros(n_live, int), np.ones(n_spoof, int)]
    types = np.r_[np.zeros(n_live, int), 1 + np.arange(n_spoof) % 10]
    subjects = np.arange(6000) // 10
    return frame(labels, np.r_[live, spoof], types, subjects)


@pytest.mark.parametrize("scenario", sorted(PAPER))
def test_paper_tables_2_and_3_arithmetic(scenario):
    (live_rejected, spoof_accepted), expected = PAPER[scenario]
    result = evaluate(paper_test_set(live_rejected, spoof_accepted))
    assert result["n_live"] == 1971 and result["n_spoof"] == 4029
    assert result["confusion_matrix"]["fp"] == live_rejected
    assert result["confusion_matrix"]["fn"] == spoof_accepted
    for key, value in expected.items():
        assert round(result[key], 4) == pytest.approx(value, abs=1e-12), key


def test_paper_s0_headline_numbers():
    r = evaluate(paper_test_set(12, 22))
    got = [round(r[k], 4) for k in ("accuracy", "f1", "apcer", "bpcer", "acer")]
    assert got == [0.9943, 0.9958, 0.0055, 0.0061, 0.0058]


# --- bootstrap ----------------------------------------------------------------------------


def _ci(df: pl.DataFrame, n: int = 400, seed: int = 5) -> dict:
    return evaluate(df, n_resamples=n, seed=seed)


def test_bootstrap_interval_covers_point_and_is_seeded():
    df = synthetic(60, seed=11)
    r = _ci(df)
    intervals = r["ci"]["intervals"]
    for key in BOOTSTRAP_METRICS:
        lo, hi = intervals[key]
        if key == "hter":  # needs validation scores
            assert lo is None and hi is None
            continue
        assert lo <= r[key] <= hi, key
        assert lo < hi, key
    for key, (lo, hi) in intervals["tpr_at_fpr"].items():
        assert lo <= r["tpr_at_fpr"][key] <= hi, key
    assert _ci(df)["ci"] == r["ci"]
    assert _ci(df, seed=6)["ci"] != r["ci"]


def test_bootstrap_narrows_with_more_subjects():
    small = _ci(synthetic(20, seed=2))["ci"]["intervals"]
    large = _ci(synthetic(400, seed=2))["ci"]["intervals"]
    for key in ("accuracy", "f1", "apcer", "bpcer", "acer", "roc_auc"):
        assert large[key][1] - large[key][0] < small[key][1] - small[key][0], key


def test_bootstrap_resamples_subjects_not_images():
    # Two subjects: one always right, one always wrong. Resampling subjects can only give
    # accuracy 0, 0.5 or 1; resampling images would give many values in between.
    labels = np.ones(40, int)
    scores = np.r_[np.full(20, 0.9), np.full(20, 0.1)]
    subjects = np.r_[np.zeros(20, int), np.ones(20, int)]
    lo, hi = bootstrap_intervals(labels, scores, subjects, n_resamples=200, seed=0, level=0.95)["accuracy"]
    assert (lo, hi) == (0.0, 1.0)


# --- McNemar ------------------------------------------------------------------------------


def test_mcnemar_exact_known_table():
    # discordant pairs b = 1, c = 9: p = 2 * (C(10,0) + C(10,1)) / 2**10 = 22 / 1024
    a = np.array([True] * 5 + [True] + [False] * 9 + [False] * 3)
    b = np.array([True] * 5 + [False] + [True] * 9 + [False] * 3)
    r = mcnemar_exact(a, b)
    assert (r["a_right_b_wrong"], r["a_wrong_b_right"]) == (1, 9)
    assert r["p_value"] == pytest.approx(22 / 1024)
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_paired_mcnemar_joins_on_path_and_rejects_other_images():
    ref = frame([0, 1, 1, 0], [0.1, 0.9, 0.2, 0.6])
    other = frame([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.1]).reverse()  # row order must not matter
    r = paired_mcnemar(ref, other)
    assert (r["a_right_b_wrong"], r["a_wrong_b_right"]) == (0, 2)
    with pytest.raises(DataError, match="same images"):
        paired_mcnemar(ref, other.head(3))


# --- input checks and CLI -----------------------------------------------------------------


def test_bad_predictions_name_the_source():
    with pytest.raises(DataError, match="my.parquet.*score"):
        evaluate(frame([0, 1], [0.1, 0.9]).drop("score"), test_source="my.parquet")
    with pytest.raises(DataError, match="label"):
        evaluate(frame([0, 2], [0.1, 0.9]))
    with pytest.raises(DataError, match="score"):
        evaluate(frame([0, 1], [0.1, float("nan")]))


def test_cli_prints_design_keys(tmp_path, capsys):
    df = synthetic(30, seed=8)
    df.write_parquet(tmp_path / "test.parquet")
    synthetic(30, seed=9).write_parquet(tmp_path / "val.parquet")
    rc = main(["metrics", str(tmp_path / "test.parquet"), "--val", str(tmp_path / "val.parquet"), "--bootstrap", "50"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "apcer", "bpcer", "acer"):
        assert isinstance(out[key], float), key
    for key in ("apcer_pais", "acer_iso", "eer", "hter", "apcer_per_type", "bpcer_at_apcer", "at_val_eer", "ci"):
        assert key in out, key
    # the CelebA-Spoof benchmark metric, both ways, and the worst-species operating points
    assert set(out["tpr_at_fpr"]) == {"0.01", "0.005", "0.001"} and all(isinstance(v, float) for v in out["tpr_at_fpr"].values())
    assert set(out["tpr_at_fpr_val_threshold"]) == {"0.01", "0.005", "0.001"}
    assert set(out["bpcer_at_apcer_pais"]) == {"1%", "5%", "10%"}
    assert out["threshold"] == 0.5 and "nearest ROC point" in out["eer_rule"]


@pytest.mark.parametrize("args, message", [(["--threshold", "1.5"], "--threshold"), (["--bootstrap", "-1"], "--bootstrap")])
def test_cli_rejects_bad_numbers(tmp_path, capsys, args, message):
    synthetic(10, seed=8).write_parquet(tmp_path / "test.parquet")
    assert main(["metrics", str(tmp_path / "test.parquet"), *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_file_is_a_clear_error(tmp_path, capsys):
    rc = main(["metrics", str(tmp_path / "nope.parquet")])
    assert rc == 2
    assert "nope.parquet" in capsys.readouterr().err


def test_scores_outside_unit_interval_are_rejected(tmp_path, capsys):
    with pytest.raises(DataError, match=r"my.parquet.*\[0, 1\].*\[-0.2, 0.9\]"):
        evaluate(frame([0, 1], [-0.2, 0.9]), test_source="my.parquet")
    with pytest.raises(DataError, match=r"\[0.1, 3.5\]"):
        evaluate(frame([0, 1], [0.1, 3.5]))
    frame([0, 1], [0.1, 17.0]).write_parquet(tmp_path / "logits.parquet")
    assert main(["metrics", str(tmp_path / "logits.parquet")]) == 2
    assert "logits.parquet" in capsys.readouterr().err
    evaluate(frame([0, 1], [0.0, 1.0]))  # the bounds themselves are probabilities


# --- the CelebA-Spoof benchmark metric: TPR at FPR ----------------------------------------

# 200 live: four high scores 0.95, 0.9, 0.85, 0.8, the other 196 below 0.5; ten spoofs.
BENCH_LIVE = np.r_[[0.95, 0.9, 0.85, 0.8], np.linspace(0.0, 0.4, 196)]
BENCH_SPOOF = np.array([0.99, 0.97, 0.95, 0.93, 0.9, 0.88, 0.85, 0.6, 0.3, 0.1])


def bench_arrays(live=BENCH_LIVE, spoof=BENCH_SPOOF):
    return np.r_[np.zeros(len(live), int), np.ones(len(spoof), int)], np.r_[live, spoof]


def test_tpr_at_fpr_hand_computed():
    labels, scores = bench_arrays()
    r = tpr_at_fpr(labels, scores)
    # FPR 1%: k = floor(0.01 * 200) = 2 -> threshold = 2nd highest live score 0.9; spoofs >= 0.9: 5 of 10
    assert r["0.01"] == {"target_fpr": 0.01, "tpr": 0.5, "threshold": 0.9, "bpcer": 0.01}
    # FPR 0.5%: k = 1 -> threshold 0.95; spoofs >= 0.95: 3 of 10. The spoof at 0.93, between the live
    # 0.95 and 0.9, counts as missed: the benchmark takes the lower corner of the ROC step.
    assert r["0.005"] == {"target_fpr": 0.005, "tpr": 0.3, "threshold": 0.95, "bpcer": 0.005}
    # FPR 0.1%: 0.001 * 200 < 1, the benchmark still rejects one live image: BPCER reached 0.5% > target
    assert r["0.001"] == {"target_fpr": 0.001, "tpr": 0.3, "threshold": 0.95, "bpcer": 0.005}
    # ties at the threshold: all three live images at 0.9 are rejected, BPCER 3% for a 1% target
    labels, scores = bench_arrays(live=np.r_[[0.9, 0.9, 0.9], np.full(97, 0.2)], spoof=np.array([0.95, 0.9, 0.5]))
    tied = tpr_at_fpr(labels, scores)["0.01"]
    assert (tied["threshold"], tied["bpcer"], tied["tpr"]) == (0.9, 0.03, pytest.approx(2 / 3))


def _benchmark_client_tpr(scores, labels, fpr):
    """The benchmark's published procedure, restated loop by loop (live sorted high to low, count spoofs down to the threshold)."""
    live = sorted((s for s, y in zip(scores, labels) if y == 0), reverse=True)
    threshold = live[max(1, int(fpr * len(live) + 1e-9)) - 1]
    spoof = sorted((s for s, y in zip(scores, labels) if y == 1), reverse=True)
    detected = 0
    while detected < len(spoof) and spoof[detected] >= threshold:
        detected += 1
    return detected / len(spoof)


def test_tpr_at_fpr_follows_the_benchmark_procedure_with_ties():
    rng = np.random.default_rng(5)
    for n_live in (150, 999, 1971):
        labels = np.r_[np.zeros(n_live, int), np.ones(2 * n_live, int)]
        scores = np.round(np.r_[rng.beta(1, 6, n_live), rng.beta(6, 1, 2 * n_live)], 2)  # many ties
        got = tpr_at_fpr(labels, scores)
        for fpr in BENCHMARK_FPRS:
            assert got[fpr_key(fpr)]["tpr"] == _benchmark_client_tpr(scores, labels, fpr), (n_live, fpr)


@pytest.mark.parametrize("rounding", [None, 20])
def test_resampled_metrics_equal_the_metrics_of_the_duplicated_images(rounding):
    # A resample that draws subject j t_j times must give exactly the metrics of a test set holding
    # subject j's images t_j times: checks the weighted AUC, the per-resample benchmark threshold
    # (with and without ties), HTER, APCER_PAIS and the validation-threshold TPR in one go.
    df = synthetic(60, per_subject=8, seed=12)
    if rounding:
        df = df.with_columns((pl.col("score") * rounding).round() / rounding)
    labels, scores, subjects, types = (df[c].to_numpy() for c in ("label", "score", "subject_id", "spoof_type"))
    codes, n_subjects = np.unique(subjects, return_inverse=True)[1], len(np.unique(subjects))
    val_thresholds = {"0.01": 0.85, "0.005": 0.9}
    engine = _ResampledScores(labels, scores, codes, n_subjects, types, 0.5, 0.45, BENCHMARK_FPRS, val_thresholds)
    times = np.random.default_rng(0).integers(0, 4, (6, n_subjects))
    got = engine.metrics(times)
    for row in range(len(times)):
        keep = np.repeat(np.arange(len(labels)), times[row, codes])
        y, s, t = labels[keep], scores[keep], types[keep]
        want = metrics_at_threshold(y, s, 0.5, t)
        for key in ("accuracy", "precision", "recall", "f1", "apcer", "bpcer", "acer", "apcer_pais", "acer_iso"):
            assert got[key][row] == pytest.approx(want[key]), key
        assert got["roc_auc"][row] == pytest.approx(roc_auc_score(y, s))
        assert got["hter"][row] == pytest.approx(metrics_at_threshold(y, s, 0.45)["acer"])
        for fpr in BENCHMARK_FPRS:
            assert got["tpr_at_fpr"][fpr_key(fpr)][row] == pytest.approx(tpr_at_fpr(y, s)[fpr_key(fpr)]["tpr"]), fpr
        for key, thr in val_thresholds.items():
            assert got["tpr_at_fpr_val_threshold"][key][row] == pytest.approx(np.mean(s[y == 1] >= thr))
            assert got["bpcer_at_val_fpr_threshold"][key][row] == pytest.approx(np.mean(s[y == 0] >= thr))


def test_tpr_at_fpr_in_the_metrics_json():
    val = synthetic(80, seed=21)
    test = synthetic(80, seed=22)
    r = evaluate(test, val, n_resamples=200, seed=3)
    assert set(r["tpr_at_fpr"]) == {"0.01", "0.005", "0.001"}
    labels, scores = test["label"].to_numpy(), test["score"].to_numpy()
    assert r["tpr_at_fpr"] == {k: v["tpr"] for k, v in tpr_at_fpr(labels, scores).items()}
    assert r["tpr_at_fpr_operating_points"]["0.01"]["bpcer"] <= 0.01
    # thresholds fixed on validation: the test BPCER reached is reported and may differ from the target
    fixed = r["tpr_at_fpr_val_threshold"]["0.01"]
    v_thr = benchmark_threshold(val["label"].to_numpy(), val["score"].to_numpy(), 0.01)
    assert fixed["threshold"] == v_thr and fixed["val_bpcer"] <= 0.01
    assert fixed["tpr"] == pytest.approx(np.mean(scores[labels == 1] >= v_thr))
    assert fixed["bpcer"] == pytest.approx(np.mean(scores[labels == 0] >= v_thr))
    for key in ("tpr_at_fpr", "tpr_at_fpr_val_threshold"):
        assert set(r["ci"]["intervals"][key]) == {"0.01", "0.005", "0.001"}, key
    lo, hi = r["ci"]["intervals"]["tpr_at_fpr_val_threshold"]["0.01"]
    assert lo <= fixed["tpr"] <= hi


# --- operating points -----------------------------------------------------------------------


def test_threshold_at_apcer_pais_takes_the_worst_species():
    # photo spoofs score high, replay (phone) spoofs low: the worst species sets the threshold
    labels = np.array([0] * 4 + [1] * 10)
    types = np.array([0] * 4 + [1] * 5 + [9] * 5)
    scores = np.array([0.05, 0.1, 0.2, 0.3] + [0.6, 0.7, 0.8, 0.9, 0.95] + [0.25, 0.35, 0.45, 0.55, 0.65])
    # APCER <= 20%: photo allows 1 of 5 below -> 0.7; phone allows 1 of 5 -> 0.35; PAIS takes 0.35
    assert threshold_at_apcer_pais(labels, scores, types, 0.2) == pytest.approx(0.35)
    m = metrics_at_threshold(labels, scores, 0.35, types)
    assert m["apcer_pais"] == pytest.approx(0.2) and m["apcer_per_type"]["photo"] == 0.0
    # pooled APCER <= 20% allows 2 of 10 spoofs below: 0.45, where phone's APCER is already 40%
    assert threshold_at_apcer(labels, scores, 0.2) == pytest.approx(0.45)
    assert metrics_at_threshold(labels, scores, 0.45, types)["apcer_pais"] == pytest.approx(0.4)


def test_operating_points_report_the_apcer_reached_on_test():
    val = synthetic(60, seed=31)
    test = synthetic(60, seed=32)
    r = evaluate(test, val)
    labels, scores, types = (test[c].to_numpy() for c in ("label", "score", "spoof_type"))
    for target, point in zip((0.01, 0.05, 0.10), r["bpcer_at_apcer"].values()):
        assert point["val_apcer"] <= target
        reached = metrics_at_threshold(labels, scores, point["threshold"], types)
        assert (point["apcer"], point["apcer_pais"], point["bpcer"]) == (reached["apcer"], reached["apcer_pais"], reached["bpcer"])
    for target, point in zip((0.01, 0.05, 0.10), r["bpcer_at_apcer_pais"].values()):
        assert point["val_apcer_pais"] <= target and point["target_apcer_pais"] == target
        assert point["apcer_pais"] == metrics_at_threshold(labels, scores, point["threshold"], types)["apcer_pais"]
    # the worst-species constraint is at least as strict: lower threshold, BPCER at least as high
    for key in r["bpcer_at_apcer"]:
        assert r["bpcer_at_apcer_pais"][key]["threshold"] <= r["bpcer_at_apcer"][key]["threshold"]
        assert r["bpcer_at_apcer_pais"][key]["bpcer"] >= r["bpcer_at_apcer"][key]["bpcer"]
