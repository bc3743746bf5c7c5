"""Classification and ISO/IEC 30107-3 presentation-attack-detection metrics.

Conventions (see DESIGN.md):
- Spoof (attack) is the positive class: label 1 = spoof, 0 = live; `score` = P(spoof).
- Tie rule: a presentation is classified as spoof when ``score >= threshold`` (the same
  rule as scikit-learn's ``roc_curve``), so a score exactly at the threshold is rejected.
- APCER = share of attack presentations accepted as live; BPCER = share of live
  presentations rejected as attacks. ``acer`` is the paper's ACER =
  (pooled APCER + BPCER) / 2; ``acer_iso`` = (APCER_PAIS + BPCER) / 2 where
  ``apcer_pais`` is the maximum APCER over the PAI species (spoof types) present.
- Thresholds other than the paper's fixed 0.5 (EER threshold, BPCER at fixed APCER)
  are chosen on validation scores and applied to test scores, never fixed on test.
- A metric whose denominator is empty is NaN (``None`` in JSON); a spoof type without
  samples is absent from ``apcer_per_type``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import polars as pl

from . import SPOOF_TYPES
from .errors import DataError

PREDICTION_COLUMNS = ("path", "subject_id", "label", "spoof_type", "score")
# Metrics that a subject-level bootstrap gives an interval for.
BOOTSTRAP_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "apcer",
    "bpcer",
    "acer",
    "apcer_pais",
    "acer_iso",
    "hter",
)


# ---------------------------------------------------------------------------
# input checks


def check_predictions(df: pl.DataFrame, source: str = "predictions") -> pl.DataFrame:
    """Raise DataError naming `source` unless `df` is a usable predictions table."""
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing} (have {df.columns})")
    if df.height == 0:
        raise DataError(f"{source}: no rows")
    labels = df["label"].to_numpy()
    if df["label"].null_count() or not np.isin(labels, (0, 1)).all():
        raise DataError(f"{source}: column 'label' must hold only 0 (live) and 1 (spoof)")
    scores = df["score"].cast(pl.Float64, strict=False)
    if scores.null_count() or not np.isfinite(scores.to_numpy()).all():
        raise DataError(f"{source}: column 'score' must hold finite numbers (P(spoof))")
    if df["subject_id"].null_count():
        raise DataError(f"{source}: column 'subject_id' has missing values")
    return df


def _arrays(df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    labels = df["label"].to_numpy().astype(np.int64)
    scores = df["score"].cast(pl.Float64).to_numpy()
    subjects = df["subject_id"].cast(pl.Utf8).to_numpy()
    spoof_types = df["spoof_type"].fill_null(-1).to_numpy().astype(np.int64)
    return labels, scores, subjects, spoof_types


# ---------------------------------------------------------------------------
# point metrics


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def type_name(spoof_type: int) -> str:
    return SPOOF_TYPES.get(int(spoof_type), f"type_{int(spoof_type)}")


def confusion_counts(labels: np.ndarray, preds: np.ndarray) -> dict[str, int]:
    """tn (live accepted), fp (live rejected), fn (spoof accepted), tp (spoof rejected)."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(preds).astype(bool)
    return {
        "tn": int(np.sum(~y & ~p)),
        "fp": int(np.sum(~y & p)),
        "fn": int(np.sum(y & ~p)),
        "tp": int(np.sum(y & p)),
    }


def rates_from_counts(tn: float, fp: float, fn: float, tp: float) -> dict[str, float]:
    """Pooled metrics from confusion counts (spoof positive)."""
    apcer = _ratio(fn, fn + tp)
    bpcer = _ratio(fp, fp + tn)
    return {
        "accuracy": _ratio(tp + tn, tn + fp + fn + tp),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "apcer": apcer,
        "bpcer": bpcer,
        "acer": (apcer + bpcer) / 2,
    }


def apcer_per_type(labels: np.ndarray, preds: np.ndarray, spoof_types: np.ndarray) -> dict[str, float]:
    """APCER of each spoof type (PAI species) that has attack samples; absent types are left out."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(preds).astype(bool)
    t = np.asarray(spoof_types)
    out = {}
    for code in sorted(np.unique(t[y]).tolist()):
        mask = y & (t == code)
        out[type_name(code)] = _ratio(np.sum(mask & ~p), np.sum(mask))
    return out


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn); NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        return math.nan
    return float(roc_auc_score(y, scores))


def metrics_at_threshold(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    spoof_types: np.ndarray | None = None,
) -> dict:
    """All threshold-dependent metrics at `threshold` (score >= threshold -> spoof)."""
    preds = np.asarray(scores) >= threshold
    counts = confusion_counts(labels, preds)
    out: dict = {"threshold": float(threshold), **rates_from_counts(**counts)}
    out["confusion_matrix"] = {**counts, "matrix": [[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]]}
    if spoof_types is not None:
        per_type = apcer_per_type(labels, preds, spoof_types)
        values = [v for v in per_type.values() if not math.isnan(v)]
        out["apcer_per_type"] = per_type
        out["apcer_pais"] = max(values) if values else math.nan
        out["acer_iso"] = (out["apcer_pais"] + out["bpcer"]) / 2
    return out


# ---------------------------------------------------------------------------
# thresholds and error-rate curves


def _finite_threshold(threshold: float, scores: np.ndarray) -> float:
    # roc_curve's first threshold is +inf ("reject nothing"); keep JSON finite with the same effect.
    if np.isinf(threshold):
        return float(np.nextafter(np.max(scores), np.inf))
    return float(threshold)


def eer(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold.

    Over all thresholds (each distinct score, with score >= t -> spoof) the one where
    |APCER - BPCER| is smallest is taken; the EER is the mean of the two rates there
    (bob.measure's convention). Returns (NaN, NaN) without both classes.
    """
    from sklearn.metrics import roc_curve

    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return math.nan, math.nan
    bpcer, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    apcer = 1.0 - tpr
    idx = int(np.argmin(np.abs(apcer - bpcer)))
    return float((apcer[idx] + bpcer[idx]) / 2), _finite_threshold(thresholds[idx], s)


def threshold_at_apcer(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """Highest threshold whose pooled APCER on these (validation) scores is <= `target`.

    The highest such threshold accepts the most live presentations, so BPCER is the
    lowest possible at that APCER. NaN without spoof samples.
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    spoof = np.sort(s[y])
    m = len(spoof)
    if m == 0:
        return math.nan
    allowed = int(math.floor(target * m + 1e-9))  # spoofs that may be accepted as live
    if allowed >= m:
        return float(np.nextafter(np.max(s), np.inf))
    # APCER(t) = #{spoof < t} / m; t = spoof[allowed] lets at most `allowed` below it.
    return float(spoof[allowed])


def format_rate(target: float) -> str:
    """0.01 -> '1%', 0.005 -> '0.5%'."""
    return f"{target * 100:g}%"


# ---------------------------------------------------------------------------
# uncertainty


def percentile_interval(values: np.ndarray, level: float) -> list[float]:
    """Percentile interval of the finite `values` ([nan, nan] when none is finite)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [math.nan, math.nan]
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return [float(lo), float(hi)]


def _tie_groups(sorted_scores: np.ndarray) -> np.ndarray:
    """Start index of each run of equal scores in a sorted array."""
    return np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])


def _sorted_weighted_auc(weights: np.ndarray, pos_sorted: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Weighted ROC-AUC for each row of `weights` (images sorted by score; ties count 1/2).

    AUC = P(score_spoof > score_live) + P(tie) / 2 under the weights: per group of equal
    scores, the spoof weight times the live weight below the group plus half the live
    weight inside it.
    """
    pos_g = np.add.reduceat(weights * pos_sorted, starts, axis=1)
    neg_g = np.add.reduceat(weights * (1.0 - pos_sorted), starts, axis=1)
    below = np.cumsum(neg_g, axis=1) - neg_g
    numer = np.sum(pos_g * (below + 0.5 * neg_g), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return numer / (pos_g.sum(axis=1) * neg_g.sum(axis=1))


def weighted_roc_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC under each row of image weights (shape (b, n) or (n,)); NaN if a class weighs 0."""
    s = np.asarray(scores, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(s, kind="stable")
    pos_sorted = np.asarray(labels)[order].astype(np.float64)
    return _sorted_weighted_auc(w[:, order], pos_sorted, _tie_groups(s[order]))


def bootstrap_intervals(
    labels: np.ndarray,
    scores: np.ndarray,
    subjects: np.ndarray,
    spoof_types: np.ndarray | None = None,
    threshold: float = 0.5,
    hter_threshold: float | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    max_block_cells: int = 4_000_000,
) -> dict[str, list[float]]:
    """Subject-level (cluster) percentile bootstrap intervals for BOOTSTRAP_METRICS (see bootstrap_samples)."""
    samples = bootstrap_samples(
        labels, scores, subjects, spoof_types, threshold, hter_threshold, n_resamples, seed, max_block_cells
    )
    return {name: percentile_interval(values, level) for name, values in samples.items()}


def bootstrap_samples(
    labels: np.ndarray,
    scores: np.ndarray,
    subjects: np.ndarray,
    spoof_types: np.ndarray | None = None,
    threshold: float = 0.5,
    hter_threshold: float | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    max_block_cells: int = 4_000_000,
) -> dict[str, np.ndarray]:
    """Each BOOTSTRAP_METRICS value on `n_resamples` subject-level (cluster) resamples (NaN where undefined).

    Images of one person are not independent, so whole subjects are resampled with
    replacement. Counts are aggregated per subject once (bincount), so each resample
    costs a (subjects x columns) product; ROC-AUC uses per-image weights in blocks of
    at most `max_block_cells` resample-image cells. Resamples where a metric is
    undefined (e.g. no live image drawn) are NaN and dropped by the intervals.
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n = len(y)
    _, subj = np.unique(np.asarray(subjects).astype(str), return_inverse=True)
    n_subj = int(subj.max()) + 1
    rng = np.random.default_rng(seed)

    pred = s >= threshold
    columns = [~y & ~pred, ~y & pred, y & ~pred, y & pred]  # tn fp fn tp
    type_codes: list[int] = []
    if spoof_types is not None:
        t = np.asarray(spoof_types)
        type_codes = sorted(np.unique(t[y]).tolist())
        for code in type_codes:
            columns += [y & (t == code) & ~pred, y & (t == code)]
    if hter_threshold is not None and not math.isnan(hter_threshold):
        pred_h = s >= hter_threshold
        columns += [~y & pred_h, ~y, y & ~pred_h, y]
    per_subject = np.stack(
        [np.bincount(subj, weights=c.astype(np.float64), minlength=n_subj) for c in columns], axis=1
    )

    order = np.argsort(s, kind="stable")
    starts = _tie_groups(s[order])
    pos_sorted = y[order].astype(np.float64)
    subj_sorted = subj[order]

    results = {name: np.empty(n_resamples) for name in BOOTSTRAP_METRICS}
    block = max(1, min(n_resamples, max_block_cells // max(n, n_subj)))
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, n_resamples, block):
            b = min(block, n_resamples - start)
            draws = rng.integers(0, n_subj, size=(b, n_subj))
            offsets = (np.arange(b) * n_subj)[:, None]
            times = np.bincount((draws + offsets).ravel(), minlength=b * n_subj).reshape(b, n_subj)
            counts = times @ per_subject  # (b, columns)
            tn, fp, fn, tp = counts[:, 0], counts[:, 1], counts[:, 2], counts[:, 3]
            sl = slice(start, start + b)
            apcer = fn / (fn + tp)
            bpcer = fp / (fp + tn)
            results["accuracy"][sl] = (tp + tn) / (tn + fp + fn + tp)
            results["precision"][sl] = tp / (tp + fp)
            results["recall"][sl] = tp / (tp + fn)
            results["f1"][sl] = 2 * tp / (2 * tp + fp + fn)
            results["apcer"][sl] = apcer
            results["bpcer"][sl] = bpcer
            results["acer"][sl] = (apcer + bpcer) / 2
            col = 4
            if type_codes:
                accepted = counts[:, col : col + 2 * len(type_codes) : 2]
                total = counts[:, col + 1 : col + 2 * len(type_codes) : 2]
                per_type = np.where(total > 0, accepted / np.where(total > 0, total, 1), -np.inf)
                pais = per_type.max(axis=1)
                pais[np.isinf(pais)] = np.nan
                results["apcer_pais"][sl] = pais
                results["acer_iso"][sl] = (pais + bpcer) / 2
                col += 2 * len(type_codes)
            else:
                results["apcer_pais"][sl] = np.nan
                results["acer_iso"][sl] = np.nan
            if len(columns) > col:
                h = counts[:, col : col + 4]
                results["hter"][sl] = (h[:, 0] / h[:, 1] + h[:, 2] / h[:, 3]) / 2
            else:
                results["hter"][sl] = np.nan
            # ROC-AUC with image weights = times the image's subject was drawn.
            weights = times[:, subj_sorted].astype(np.float64)
            results["roc_auc"][sl] = _sorted_weighted_auc(weights, pos_sorted, starts)
    return results


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Paired exact McNemar test (two-sided binomial test on the discordant pairs).

    b = images A gets right and B gets wrong, c = the reverse; p = 1 without discordant pairs.
    """
    from scipy.stats import binomtest

    a = np.asarray(correct_a).astype(bool)
    bb = np.asarray(correct_b).astype(bool)
    if a.shape != bb.shape:
        raise ValueError(f"paired vectors differ in length: {a.shape} vs {bb.shape}")
    b = int(np.sum(a & ~bb))
    c = int(np.sum(~a & bb))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return {"n": int(a.size), "a_right_b_wrong": b, "a_wrong_b_right": c, "p_value": p}


def paired_mcnemar(
    reference: pl.DataFrame, other: pl.DataFrame, threshold: float = 0.5, names: tuple[str, str] = ("reference", "other")
) -> dict:
    """McNemar of two models' correctness at `threshold` on the same images (joined on path)."""
    ref = reference.select("path", "label", "score")
    oth = other.select("path", pl.col("label").alias("label_other"), pl.col("score").alias("score_other"))
    joined = ref.join(oth, on="path", how="inner")
    if joined.height != reference.height or joined.height != other.height:
        raise DataError(
            f"{names[0]} and {names[1]} predictions do not cover the same images "
            f"({reference.height} vs {other.height} rows, {joined.height} shared paths)"
        )
    if (joined["label"] != joined["label_other"]).any():
        raise DataError(f"{names[0]} and {names[1]} predictions disagree on labels of the same paths")
    y = joined["label"].to_numpy().astype(bool)
    correct_a = (joined["score"].to_numpy() >= threshold) == y
    correct_b = (joined["score_other"].to_numpy() >= threshold) == y
    return mcnemar_exact(correct_a, correct_b)


# ---------------------------------------------------------------------------
# the whole evaluation of one model


def _clean(obj):
    """NaN -> None so the JSON is standard."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, Mapping):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


def evaluate(
    test: pl.DataFrame,
    val: pl.DataFrame | None = None,
    threshold: float = 0.5,
    bpcer_at_apcer: Sequence[float] = (0.01, 0.05, 0.10),
    n_resamples: int = 0,
    seed: int = 0,
    level: float = 0.95,
    test_source: str = "test predictions",
    val_source: str = "validation predictions",
) -> dict:
    """Every metric of one model; JSON-ready (NaN -> None).

    Top level: metrics at `threshold` (the paper's 0.5) with the DESIGN.md key names,
    ROC-AUC and the test EER (threshold free). With `val`: `at_val_eer` (metrics on test
    at the validation-EER threshold, incl. `hter`), `bpcer_at_apcer` (thresholds set on
    validation), and `hter` at top level. With `n_resamples` > 0: `ci` intervals.
    """
    check_predictions(test, test_source)
    labels, scores, subjects, spoof_types = _arrays(test)
    out: dict = {
        "n_images": int(len(labels)),
        "n_live": int(np.sum(labels == 0)),
        "n_spoof": int(np.sum(labels == 1)),
        "n_subjects": int(len(np.unique(subjects))),
        "tie_rule": "score >= threshold -> spoof",
    }
    out["spoof_type_counts"] = {
        type_name(code): int(np.sum((labels == 1) & (spoof_types == code)))
        for code in sorted(np.unique(spoof_types[labels == 1]).tolist())
    }
    out.update(metrics_at_threshold(labels, scores, threshold, spoof_types))
    out["roc_auc"] = roc_auc(labels, scores)
    out["eer"], out["eer_threshold_test"] = eer(labels, scores)
    out["hter"] = math.nan
    hter_threshold = None
    if val is not None:
        check_predictions(val, val_source)
        v_labels, v_scores, _, _ = _arrays(val)
        val_eer, val_thr = eer(v_labels, v_scores)
        out["val"] = {"n_images": int(len(v_labels)), "eer": val_eer, "eer_threshold": val_thr}
        if not math.isnan(val_thr):
            at = metrics_at_threshold(labels, scores, val_thr, spoof_types)
            at["hter"] = at["acer"]  # HTER = (APCER + BPCER) / 2 at a threshold fixed on validation
            out["at_val_eer"] = at
            out["hter"] = at["hter"]
            hter_threshold = val_thr
        fixed = {}
        for target in bpcer_at_apcer:
            thr = threshold_at_apcer(v_labels, v_scores, target)
            if math.isnan(thr):
                continue
            m = metrics_at_threshold(labels, scores, thr)
            v = metrics_at_threshold(v_labels, v_scores, thr)
            fixed[format_rate(target)] = {
                "target_apcer": float(target),
                "threshold": thr,
                "val_apcer": v["apcer"],
                "val_bpcer": v["bpcer"],
                "apcer": m["apcer"],
                "bpcer": m["bpcer"],
            }
        out["bpcer_at_apcer"] = fixed
    if n_resamples > 0:
        out["ci"] = {
            "method": "subject-level cluster percentile bootstrap",
            "level": float(level),
            "n_resamples": int(n_resamples),
            "seed": int(seed),
            "intervals": bootstrap_intervals(
                labels,
                scores,
                subjects,
                spoof_types,
                threshold=threshold,
                hter_threshold=hter_threshold,
                n_resamples=n_resamples,
                seed=seed,
                level=level,
            ),
        }
    return _clean(out)


def read_predictions(path) -> pl.DataFrame:
    """Read and check a predictions parquet file (errors name the file)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # polars raises several exception types for bad files
        raise DataError(f"{path}: not a readable parquet file ({exc})") from exc
    return check_predictions(df, str(path))
