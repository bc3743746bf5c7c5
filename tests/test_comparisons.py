"""Paired subject-level bootstrap comparisons, Holm correction and McNemar, by hand and by simulation."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from eval_fakes import clustered_pair, fake_predictions, same_images

from fasflow.errors import DataError
from fasflow.metrics import (
    COMPARISON_METRICS,
    DECISION_THRESHOLD,
    bootstrap_p_value,
    compare_to_reference,
    holm_adjust,
    mcnemar_exact,
    p_value_floor,
    paired_bootstrap,
    resamples_for_holm,
)

ALPHA = 0.05


# --- by hand ------------------------------------------------------------------------------


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (monotone)
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # NaN is outside the family: m = 2
    adjusted = holm_adjust([0.01, math.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    # capped at 1, and still monotone in the sorted order
    assert holm_adjust([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]).size == 0


def test_p_value_floor():
    # the smallest p a B-resample test can give, and what Holm needs to reach alpha with m tests
    assert p_value_floor(200) == pytest.approx(2 / 201)
    assert bootstrap_p_value(np.ones(200)) == pytest.approx(p_value_floor(200))
    assert resamples_for_holm(20, 0.05) == 800 and p_value_floor(800) * 20 < 0.05 <= p_value_floor(799) * 20


def test_bootstrap_p_value_by_hand():
    # 99 resamples above zero, one below: p = 2 * (1 + 1) / (100 + 1)
    assert bootstrap_p_value(np.r_[np.ones(99), -1.0]) == pytest.approx(4 / 101)
    # zeros count on both sides: far side holds {-1, 0} -> 2 * 3 / 6 = 1
    assert bootstrap_p_value(np.array([-1.0, 0.0, 1.0, 2.0, 3.0])) == 1.0
    # undefined resamples (NaN) are left out
    assert bootstrap_p_value(np.r_[np.ones(9), np.nan]) == pytest.approx(2 * 1 / 10)
    assert math.isnan(bootstrap_p_value(np.array([np.nan])))


def test_identical_models_do_not_differ():
    d = clustered_pair(np.random.default_rng(0), n_subjects=40)
    r = paired_bootstrap(d["labels"], d["reference"], d["reference"], d["subjects"], n_resamples=100, seed=1)
    for metric in COMPARISON_METRICS:
        assert r[metric]["difference"] == 0.0 and r[metric]["ci_low"] == 0.0 == r[metric]["ci_high"], metric
        assert r[metric]["p_value"] == 1.0, metric


def test_both_models_are_scored_on_the_same_resampled_subjects():
    # The other model differs from the reference only by one extra error. Paired resamples can
    # only see that error or not: the ACER difference is never negative. Unpaired resamples
    # (different subjects for the two models) would swing both ways.
    rng = np.random.default_rng(3)
    d = clustered_pair(rng, n_subjects=60)
    other = d["reference"].copy()
    spoof_right = np.flatnonzero((d["labels"] == 1) & (other >= DECISION_THRESHOLD))[0]
    other[spoof_right] = 0.1
    r = paired_bootstrap(d["labels"], d["reference"], other, d["subjects"], n_resamples=300, seed=2)
    assert r["acer"]["difference"] > 0
    assert r["acer"]["ci_low"] >= 0.0 and r["acer"]["ci_high"] > 0
    assert r["apcer"]["ci_low"] >= 0.0 and r["bpcer"]["ci_low"] == r["bpcer"]["ci_high"] == 0.0


def test_compare_to_reference_family_and_errors():
    base = fake_predictions(n_subjects=40, seed=1)
    predictions = {"S0": base, "S1": same_images(base, seed=2), "S2": same_images(base, seed=3, noise=0.6)}
    # 1000 resamples: p can reach 2 / 1001, so Holm over 10 comparisons can reach 0.02 (see p_value_floor)
    rows = compare_to_reference(predictions, "S0", n_resamples=1000, seed=4, level=0.95)
    assert [(r["model"], r["metric"]) for r in rows] == [(m, k) for m in ("S1", "S2") for k in COMPARISON_METRICS]
    p = np.array([r["p_value"] for r in rows])
    assert np.array([r["p_holm"] for r in rows]) == pytest.approx(holm_adjust(p))
    assert all(r["p_holm"] >= r["p_value"] for r in rows)
    # much noisier S2 is worse than S0 on ACER, beyond chance and after Holm
    s2_acer = next(r for r in rows if r["model"] == "S2" and r["metric"] == "acer")
    assert s2_acer["difference"] > 0 and s2_acer["ci_low"] > 0 and s2_acer["p_holm"] < ALPHA
    # same seed, same numbers
    assert compare_to_reference(predictions, "S0", 1000, 4, 0.95) == rows
    with pytest.raises(DataError, match="reference model 'S9'"):
        compare_to_reference(predictions, "S9", 10, 0, 0.95)
    other_subjects = base.with_columns(pl.concat_str(pl.lit("x"), pl.col("subject_id")).alias("subject_id"))
    with pytest.raises(DataError, match="subjects"):
        compare_to_reference({"S0": base, "S1": other_subjects}, "S0", 10, 0, 0.95)


# --- by simulation ------------------------------------------------------------------------

# Two equally good models whose errors cluster in subjects: the issue measured McNemar rejecting
# ~27% of such runs at the 5% level. 400 runs give a Monte Carlo SE of sqrt(0.05 * 0.95 / 400) =
# 0.011 around a true 5% rate; 200 resamples per run keep each run at ~25 ms.
NULL_RUNS, POWER_RUNS, RESAMPLES = 400, 100, 200


def _simulate(runs: int, other_error_rate: float | None, seed: int) -> dict[str, float]:
    """Share of runs each test rejects at ALPHA: the paired bootstrap per metric, Holm over the five, McNemar."""
    rng = np.random.default_rng(seed)
    rejected = {**{m: 0 for m in COMPARISON_METRICS}, "any_after_holm": 0, "mcnemar": 0}
    for run in range(runs):
        d = clustered_pair(rng, n_subjects=150, per_subject=10, error_rate=0.05, other_error_rate=other_error_rate)
        r = paired_bootstrap(d["labels"], d["reference"], d["other"], d["subjects"], n_resamples=RESAMPLES, seed=run)
        p = [r[m]["p_value"] for m in COMPARISON_METRICS]
        for m, value in zip(COMPARISON_METRICS, p):
            rejected[m] += value < ALPHA
        rejected["any_after_holm"] += bool((holm_adjust(p) < ALPHA).any())
        y = d["labels"].astype(bool)
        correct = [(d[k] >= DECISION_THRESHOLD) == y for k in ("reference", "other")]
        rejected["mcnemar"] += mcnemar_exact(*correct)["p_value"] < ALPHA
    return {k: v / runs for k, v in rejected.items()}


def test_paired_bootstrap_keeps_its_level_where_mcnemar_does_not():
    rates = _simulate(NULL_RUNS, None, seed=2024)
    # Measured: ACER 0.060, APCER 0.035, BPCER 0.058, F1 0.040, ROC-AUC 0.068; any of the five after Holm 0.040.
    for metric in COMPARISON_METRICS:
        assert rates[metric] <= 0.08, (metric, rates)
    assert rates["any_after_holm"] <= ALPHA + 0.03, rates
    # The same runs with McNemar (measured 0.263): the bound above would have failed.
    assert rates["mcnemar"] > 0.15, rates


def test_paired_bootstrap_finds_a_real_difference():
    # The other model's subjects err 2.5 times as often (5% -> 12.5% of images on average).
    rates = _simulate(POWER_RUNS, 0.125, seed=7)
    assert rates["acer"] > 0.8, rates  # measured 0.97 (F1 0.97, ROC-AUC 0.95, BPCER 0.81)
    assert rates["any_after_holm"] > 0.8, rates  # measured 0.91
