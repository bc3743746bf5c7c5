"""Classification and ISO/IEC 30107-3 presentation-attack-detection metrics.

Conventions (see DESIGN.md):
- Spoof (attack) is the positive class: label 1 = spoof, 0 = live; `score` = P(spoof).
- Tie rule: a presentation is classified as spoof when ``score >= threshold`` (the same
  rule as scikit-learn's ``roc_curve``), so a score exactly at the threshold is rejected.
- APCER = share of attack presentations accepted as live; BPCER = share of live
  presentations rejected as attacks. ``acer`` is the paper's ACER =
  (pooled APCER + BPCER) / 2; ``acer_iso`` = (APCER_PAIS + BPCER) / 2 where
  ``apcer_pais`` is the maximum APCER over the PAI species (spoof types) present.
- One decision threshold, DECISION_THRESHOLD = 0.5 (the paper's: P(spoof) >= 0.5 is the
  argmax of the two-class softmax; at exactly equal logits the tie rule makes it spoof), is
  used for the paper's metrics, model selection, the tables, figures and extended tables;
  it is not a configuration value.
- Thresholds other than DECISION_THRESHOLD (EER threshold, BPCER at fixed APCER or at
  fixed APCER_PAIS) are chosen on validation scores and applied to test scores, never
  fixed on test; the test rates reached at them are reported next to the targets.
  One exception, named as such: the CelebA-Spoof benchmark metric ``tpr_at_fpr`` (TPR =
  1 - APCER at BPCER = 1%, 0.5%, 0.1%) chooses its threshold on the same scores, as the
  benchmark does; ``tpr_at_fpr_val_threshold`` is the same with validation thresholds.
- EER: the nearest point of the empirical ROC, i.e. the observed threshold where
  |APCER - BPCER| is smallest, EER = (APCER + BPCER) / 2 there; no interpolation.
- Uncertainty: one subject-level (cluster) bootstrap, whole subjects drawn with
  replacement, gives the percentile intervals and the paired comparisons of two models
  (the same resampled subjects for both), with Holm's correction across a table.
- A metric whose denominator is empty is NaN (``None`` in JSON); a spoof type without
  samples is absent from ``apcer_per_type``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import polars as pl

from . import DECISION_THRESHOLD, SPOOF_TYPES
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
    low, high = float(scores.min()), float(scores.max())
    if low < 0.0 or high > 1.0:
        raise DataError(f"{source}: column 'score' must be P(spoof) in [0, 1], found values in [{low:g}, {high:g}]")
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


def threshold_at_apcer_pais(labels: np.ndarray, scores: np.ndarray, spoof_types: np.ndarray, target: float) -> float:
    """Highest threshold whose APCER_PAIS (worst spoof type) on these (validation) scores is <= `target`.

    Each species' APCER grows with the threshold, so the worst one stays within the target
    exactly up to the lowest of the species' own `threshold_at_apcer` values. Species absent
    from these scores cannot constrain it. NaN without spoof samples.
    """
    y = np.asarray(labels).astype(bool)
    t = np.asarray(spoof_types)
    s = np.asarray(scores, dtype=np.float64)
    per_species = [threshold_at_apcer(np.ones(int(np.sum(y & (t == c))), bool), s[y & (t == c)], target) for c in np.unique(t[y])]
    return float(min(per_species)) if per_species else math.nan


def format_rate(target: float) -> str:
    """0.01 -> '1%', 0.005 -> '0.5%'."""
    return f"{target * 100:g}%"


# ---------------------------------------------------------------------------
# the CelebA-Spoof benchmark metric: TPR at FPR with spoof positive (1 - APCER at BPCER = FPR)

# The FPRs the CelebA-Spoof intra-dataset benchmark reports (its official client code).
BENCHMARK_FPRS = (0.01, 0.005, 0.001)


def fpr_key(fpr: float) -> str:
    """JSON key of a benchmark FPR: 0.01 -> '0.01', 0.005 -> '0.005'."""
    return f"{fpr:g}"


def _benchmark_rank(fpr: float, n_live: float) -> np.ndarray | int:
    # max(1, floor(fpr * n_live)); the 1e-9 keeps 0.01 * 300 = 3.0000000000000004 or 2.9999999999999996 at 3.
    return np.maximum(1, np.floor(np.asarray(fpr) * n_live + 1e-9).astype(np.int64))


def benchmark_threshold(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """The CelebA-Spoof benchmark's threshold for a target FPR (= BPCER, live rejected).

    As in the benchmark's official client code: with live scores sorted from the highest,
    the threshold is the k-th of them, k = max(1, floor(fpr * n_live)). With the tie rule
    score >= threshold -> spoof, exactly k live images are rejected when scores are distinct
    (BPCER = k / n_live <= fpr, or 1 / n_live when fpr * n_live < 1); live images tied with
    the k-th are rejected too, so ties can push BPCER above the target. Spoof images scored
    between the k-th and the (k+1)-th live score count as missed (the ROC step's lower
    corner), which is what the benchmark does. NaN without live samples.
    """
    y = np.asarray(labels).astype(bool)
    live = np.sort(np.asarray(scores, dtype=np.float64)[~y])[::-1]
    if live.size == 0:
        return math.nan
    return float(live[int(_benchmark_rank(fpr, live.size)) - 1])


def rates_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """(TPR, BPCER) at `threshold`: share of spoof and of live images with score >= threshold."""
    y = np.asarray(labels).astype(bool)
    rejected = np.asarray(scores, dtype=np.float64) >= threshold
    return _ratio(np.sum(y & rejected), np.sum(y)), _ratio(np.sum(~y & rejected), np.sum(~y))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fprs: Sequence[float] = BENCHMARK_FPRS) -> dict[str, dict]:
    """The benchmark metric on these scores: fpr_key -> {tpr, threshold, bpcer, target_fpr}.

    The threshold is chosen on the same scores (benchmark_threshold), as the benchmark does;
    `bpcer` is the FPR actually reached. TPR = 1 - APCER (spoof positive).
    """
    out = {}
    for fpr in fprs:
        threshold = benchmark_threshold(labels, scores, fpr)
        tpr, bpcer = rates_at(labels, scores, threshold) if not math.isnan(threshold) else (math.nan, math.nan)
        out[fpr_key(fpr)] = {"target_fpr": float(fpr), "tpr": tpr, "threshold": threshold, "bpcer": bpcer}
    return out


# ---------------------------------------------------------------------------
# uncertainty: one subject-level (cluster) bootstrap for intervals and paired comparisons


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


def _grouped_weights(weights: np.ndarray, pos_sorted: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spoof and live weight of each group of equal scores (images sorted by ascending score), per row."""
    pos_g = np.add.reduceat(weights * pos_sorted, starts, axis=1)
    neg_g = np.add.reduceat(weights * (1.0 - pos_sorted), starts, axis=1)
    return pos_g, neg_g


def _grouped_auc(pos_g: np.ndarray, neg_g: np.ndarray) -> np.ndarray:
    """Weighted ROC-AUC per row = P(score_spoof > score_live) + P(tie) / 2 under the weights.

    Per group of equal scores: its spoof weight times the live weight below it plus half the
    live weight inside it.
    """
    below = np.cumsum(neg_g, axis=1) - neg_g
    numer = np.sum(pos_g * (below + 0.5 * neg_g), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return numer / (pos_g.sum(axis=1) * neg_g.sum(axis=1))


def _grouped_tpr_at_fpr(pos_g: np.ndarray, neg_g: np.ndarray, fpr: float) -> np.ndarray:
    """benchmark_threshold + TPR per row of weights (a resample counts an image as often as it was drawn).

    The threshold is the group where the live weight at or above it first reaches
    k = max(1, floor(fpr * live weight)); TPR = spoof weight at or above it / spoof weight.
    """
    live_above = np.cumsum(neg_g[:, ::-1], axis=1)[:, ::-1]  # live weight with score >= each group's
    spoof_above = np.cumsum(pos_g[:, ::-1], axis=1)[:, ::-1]
    n_live, n_spoof = live_above[:, 0], spoof_above[:, 0]
    k = _benchmark_rank(fpr, n_live)
    # live_above falls with the group index: the highest group still reaching k is the threshold.
    group = np.sum(live_above >= k[:, None], axis=1) - 1
    tpr = spoof_above[np.arange(len(group)), np.maximum(group, 0)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n_live > 0) & (n_spoof > 0), tpr / n_spoof, np.nan)


def weighted_roc_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC under each row of image weights (shape (b, n) or (n,)); NaN if a class weighs 0."""
    s = np.asarray(scores, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(s, kind="stable")
    pos_sorted = np.asarray(labels)[order].astype(np.float64)
    return _grouped_auc(*_grouped_weights(w[:, order], pos_sorted, _tie_groups(s[order])))


def _subject_codes(subjects: np.ndarray) -> tuple[np.ndarray, int]:
    _, codes = np.unique(np.asarray(subjects).astype(str), return_inverse=True)
    return codes, int(codes.max()) + 1


def _subject_resamples(n_subjects: int, n_images: int, n_resamples: int, seed: int, max_block_cells: int):
    """Yield (slice of resamples, times): times[r, j] = how often subject j was drawn in resample r.

    Each resample draws n_subjects subjects with replacement. Resamples come in blocks of at
    most `max_block_cells` resample-image cells, so memory does not grow with n_resamples.
    """
    rng = np.random.default_rng(seed)
    block = max(1, min(n_resamples, max_block_cells // max(n_images, n_subjects)))
    for start in range(0, n_resamples, block):
        b = min(block, n_resamples - start)
        draws = rng.integers(0, n_subjects, size=(b, n_subjects))
        offsets = (np.arange(b) * n_subjects)[:, None]
        times = np.bincount((draws + offsets).ravel(), minlength=b * n_subjects).reshape(b, n_subjects)
        yield slice(start, start + b), times


class _ResampledScores:
    """One model's test scores prepared once for subject resampling.

    Threshold-dependent metrics only need confusion counts, so each subject's counts are
    aggregated once (bincount) and a resample costs a (subjects x columns) product. ROC-AUC
    and the same-scores TPR@FPR need the score order: images are sorted once and weighted by
    how often their subject was drawn.
    """

    def __init__(
        self,
        labels: np.ndarray,
        scores: np.ndarray,
        subject_codes: np.ndarray,
        n_subjects: int,
        spoof_types: np.ndarray | None,
        threshold: float,
        hter_threshold: float | None,
        fprs: Sequence[float],
        val_fpr_thresholds: Mapping[str, float],
    ) -> None:
        y = np.asarray(labels).astype(bool)
        s = np.asarray(scores, dtype=np.float64)
        pred = s >= threshold
        columns: dict[str, np.ndarray] = {"tn": ~y & ~pred, "fp": ~y & pred, "fn": y & ~pred, "tp": y & pred}
        self.type_codes: list[int] = []
        if spoof_types is not None:
            t = np.asarray(spoof_types)
            self.type_codes = sorted(np.unique(t[y]).tolist())
            for code in self.type_codes:
                columns[f"accepted_{code}"] = y & (t == code) & ~pred
                columns[f"attacks_{code}"] = y & (t == code)
        self.hter = hter_threshold is not None and not math.isnan(hter_threshold)
        if self.hter:
            columns["hter_fp"] = ~y & (s >= hter_threshold)
            columns["hter_fn"] = y & (s < hter_threshold)
        self.val_keys = [k for k, thr in val_fpr_thresholds.items() if not math.isnan(thr)]
        for key in self.val_keys:
            columns[f"val_tp_{key}"] = y & (s >= val_fpr_thresholds[key])
            columns[f"val_fp_{key}"] = ~y & (s >= val_fpr_thresholds[key])
        self.column = {name: i for i, name in enumerate(columns)}
        self.per_subject = np.stack(
            [np.bincount(subject_codes, weights=c.astype(np.float64), minlength=n_subjects) for c in columns.values()], axis=1
        )
        order = np.argsort(s, kind="stable")
        self.starts = _tie_groups(s[order])
        self.pos_sorted = y[order].astype(np.float64)
        self.subject_sorted = subject_codes[order]
        self.fprs = tuple(fprs)

    def metrics(self, times: np.ndarray) -> dict:
        """Every metric on each resample of `times` (rows); NaN where a metric is undefined."""
        counts = times @ self.per_subject
        c = {name: counts[:, i] for name, i in self.column.items()}
        tn, fp, fn, tp = c["tn"], c["fp"], c["fn"], c["tp"]
        out: dict = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            apcer = fn / (fn + tp)
            bpcer = fp / (fp + tn)
            out["accuracy"] = (tp + tn) / (tn + fp + fn + tp)
            out["precision"] = tp / (tp + fp)
            out["recall"] = tp / (tp + fn)
            out["f1"] = 2 * tp / (2 * tp + fp + fn)
            out["apcer"] = apcer
            out["bpcer"] = bpcer
            out["acer"] = (apcer + bpcer) / 2
            if self.type_codes:
                accepted = np.stack([c[f"accepted_{code}"] for code in self.type_codes], axis=1)
                total = np.stack([c[f"attacks_{code}"] for code in self.type_codes], axis=1)
                per_type = np.where(total > 0, accepted / np.where(total > 0, total, 1), -np.inf)
                pais = per_type.max(axis=1)
                pais[np.isinf(pais)] = np.nan
            else:
                pais = np.full(len(times), np.nan)
            out["apcer_pais"] = pais
            out["acer_iso"] = (pais + bpcer) / 2
            out["hter"] = (c["hter_fp"] / (fp + tn) + c["hter_fn"] / (fn + tp)) / 2 if self.hter else np.full(len(times), np.nan)
            out["tpr_at_fpr_val_threshold"] = {key: c[f"val_tp_{key}"] / (fn + tp) for key in self.val_keys}
            out["bpcer_at_val_fpr_threshold"] = {key: c[f"val_fp_{key}"] / (fp + tn) for key in self.val_keys}
        # Image weights = times the image's subject was drawn.
        pos_g, neg_g = _grouped_weights(times[:, self.subject_sorted].astype(np.float64), self.pos_sorted, self.starts)
        out["roc_auc"] = _grouped_auc(pos_g, neg_g)
        out["tpr_at_fpr"] = {fpr_key(fpr): _grouped_tpr_at_fpr(pos_g, neg_g, fpr) for fpr in self.fprs}
        return out


def _store(results: dict, block: Mapping, rows: slice, n_resamples: int) -> None:
    """Copy one block of resampled metrics (nested dicts of arrays) into `results`."""
    for name, values in block.items():
        if isinstance(values, Mapping):
            _store(results.setdefault(name, {}), values, rows, n_resamples)
        else:
            results.setdefault(name, np.empty(n_resamples))[rows] = values


def bootstrap_samples(
    labels: np.ndarray,
    scores: np.ndarray,
    subjects: np.ndarray,
    spoof_types: np.ndarray | None = None,
    threshold: float = DECISION_THRESHOLD,
    hter_threshold: float | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    max_block_cells: int = 4_000_000,
    fprs: Sequence[float] = BENCHMARK_FPRS,
    val_fpr_thresholds: Mapping[str, float] | None = None,
) -> dict:
    """Each metric on `n_resamples` subject-level (cluster) resamples (NaN where undefined).

    Images of one person are not independent, so whole subjects are resampled with
    replacement. Keys: BOOTSTRAP_METRICS (arrays); ``tpr_at_fpr`` (fpr_key -> array), whose
    threshold is chosen again in every resample, as the benchmark chooses it on the scores at
    hand; ``tpr_at_fpr_val_threshold`` and ``bpcer_at_val_fpr_threshold`` (fpr_key -> array)
    at the fixed validation thresholds `val_fpr_thresholds`. Resamples where a metric is
    undefined (e.g. no live image drawn) are NaN and dropped by the intervals.
    """
    codes, n_subjects = _subject_codes(subjects)
    model = _ResampledScores(
        labels, scores, codes, n_subjects, spoof_types, threshold, hter_threshold, fprs, val_fpr_thresholds or {}
    )
    results: dict = {}
    for rows, times in _subject_resamples(n_subjects, len(codes), n_resamples, seed, max_block_cells):
        _store(results, model.metrics(times), rows, n_resamples)
    return results


def _intervals(samples: Mapping, level: float) -> dict:
    return {
        name: _intervals(values, level) if isinstance(values, Mapping) else percentile_interval(values, level)
        for name, values in samples.items()
    }


def bootstrap_intervals(*args, level: float = 0.95, **kwargs) -> dict:
    """Subject-level (cluster) percentile bootstrap intervals at `level` of every metric of
    bootstrap_samples, which takes the other arguments."""
    return _intervals(bootstrap_samples(*args, **kwargs), level)


# ---------------------------------------------------------------------------
# comparing two models on the same test images

# Metrics two models are compared on (the Holm family is every model x these metrics).
COMPARISON_METRICS = ("acer", "apcer", "bpcer", "f1", "roc_auc")


def paired_arrays(reference: pl.DataFrame, other: pl.DataFrame, names: tuple[str, str] = ("reference", "other")) -> dict:
    """Two models' predictions joined on path: labels, subjects and both score vectors, aligned.

    Raises DataError unless both cover the same images with the same labels and subjects.
    """
    ref = reference.select("path", "label", pl.col("subject_id").cast(pl.Utf8), "score")
    oth = other.select(
        "path",
        pl.col("label").alias("label_other"),
        pl.col("subject_id").cast(pl.Utf8).alias("subject_other"),
        pl.col("score").alias("score_other"),
    )
    joined = ref.join(oth, on="path", how="inner").sort("path")
    if joined.height != reference.height or joined.height != other.height:
        raise DataError(
            f"{names[0]} and {names[1]} predictions do not cover the same images "
            f"({reference.height} vs {other.height} rows, {joined.height} shared paths)"
        )
    if (joined["label"] != joined["label_other"]).any():
        raise DataError(f"{names[0]} and {names[1]} predictions disagree on labels of the same paths")
    if (joined["subject_id"] != joined["subject_other"]).any():
        raise DataError(f"{names[0]} and {names[1]} predictions disagree on subjects of the same paths")
    return {
        "labels": joined["label"].to_numpy().astype(np.int64),
        "subjects": joined["subject_id"].to_numpy(),
        "reference": joined["score"].cast(pl.Float64).to_numpy(),
        "other": joined["score_other"].cast(pl.Float64).to_numpy(),
    }


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided percentile-bootstrap p-value of H0: difference = 0.

    Twice the share of resampled differences on the far side of zero, with the +1
    correction: p = min(1, 2 (1 + min(#{d <= 0}, #{d >= 0})) / (B + 1)) over the B finite
    resamples; a resample exactly at 0 counts on both sides (conservative). p < alpha
    matches 0 lying outside the (1 - alpha) percentile interval. NaN without finite resamples.
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return math.nan
    far = min(int(np.sum(d <= 0)), int(np.sum(d >= 0)))
    return float(min(1.0, 2.0 * (1 + far) / (d.size + 1)))


def p_value_floor(n_resamples: int) -> float:
    """The smallest p-value bootstrap_p_value can give with `n_resamples` resamples: 2 / (B + 1)."""
    return 2.0 / (n_resamples + 1)


def resamples_for_holm(n_comparisons: int, alpha: float) -> int:
    """Fewest resamples B for which Holm over `n_comparisons` tests can reject at `alpha` at all.

    Holm's smallest adjusted p is n_comparisons * p_value_floor(B), which must be < alpha.
    """
    # round() keeps float noise (1 - 0.95 = 0.050000000000000044) from moving the bound by one
    return int(math.floor(round(2 * n_comparisons / alpha - 1, 9))) + 1


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); NaN entries stay NaN, outside the family.

    With the m finite p-values sorted, p_(1) <= ... <= p_(m), the adjusted value of p_(i) is
    max over j <= i of min(1, (m - j + 1) p_(j)); reject where adjusted p < alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def _point_comparison_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    rates = metrics_at_threshold(labels, scores, threshold)
    rates["roc_auc"] = roc_auc(labels, scores)
    return {name: rates[name] for name in COMPARISON_METRICS}


def paired_bootstrap(
    labels: np.ndarray,
    reference_scores: np.ndarray,
    other_scores: np.ndarray,
    subjects: np.ndarray,
    threshold: float = DECISION_THRESHOLD,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    max_block_cells: int = 4_000_000,
) -> dict[str, dict]:
    """Paired subject-level bootstrap of other - reference on the same test images, per COMPARISON_METRICS.

    Both models are scored on the same images, so each resample draws one set of subjects
    and evaluates both models on it; the spread of the difference then includes the
    subjects both find hard, which an image-level test (McNemar) ignores. Per metric:
    reference and other values, difference (other - reference), its percentile interval,
    the two-sided bootstrap_p_value and the number of resamples where it was defined.
    """
    codes, n_subjects = _subject_codes(subjects)
    models = [
        _ResampledScores(labels, scores, codes, n_subjects, None, threshold, None, (), {})
        for scores in (reference_scores, other_scores)
    ]
    differences = {name: np.empty(n_resamples) for name in COMPARISON_METRICS}
    for rows, times in _subject_resamples(n_subjects, len(codes), n_resamples, seed, max_block_cells):
        ref, oth = (model.metrics(times) for model in models)
        for name in COMPARISON_METRICS:
            differences[name][rows] = oth[name] - ref[name]
    point_ref = _point_comparison_metrics(labels, reference_scores, threshold)
    point_oth = _point_comparison_metrics(labels, other_scores, threshold)
    out = {}
    for name in COMPARISON_METRICS:
        d = differences[name]
        lo, hi = percentile_interval(d, level)
        out[name] = {
            "reference": point_ref[name],
            "other": point_oth[name],
            "difference": point_oth[name] - point_ref[name],
            "ci_low": lo,
            "ci_high": hi,
            "p_value": bootstrap_p_value(d),
            "n_resamples_defined": int(np.sum(np.isfinite(d))),
        }
    return out


def compare_to_reference(
    predictions: Mapping[str, pl.DataFrame], reference: str, n_resamples: int, seed: int, level: float
) -> list[dict]:
    """Every model against `reference` by paired_bootstrap, Holm-adjusted over the whole family.

    The family is every (model, metric) pair returned: (models - 1) x COMPARISON_METRICS
    tests. Rows: model, metric, reference, other, difference, ci_low, ci_high, p_value,
    p_holm, n_resamples_defined. Every comparison uses the same `seed`, so every model is
    compared on the same resampled subjects.
    """
    if reference not in predictions:
        raise DataError(f"reference model {reference!r} has no predictions (have {sorted(predictions)})")
    rows = []
    for name, df in predictions.items():
        if name == reference:
            continue
        pair = paired_arrays(predictions[reference], df, names=(reference, name))
        result = paired_bootstrap(
            pair["labels"], pair["reference"], pair["other"], pair["subjects"], n_resamples=n_resamples, seed=seed, level=level
        )
        rows += [{"model": name, "metric": metric, **values} for metric, values in result.items()]
    for row, adjusted in zip(rows, holm_adjust([row["p_value"] for row in rows])):
        row["p_holm"] = float(adjusted)
    return rows


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Paired exact McNemar test (two-sided binomial test on the discordant pairs).

    b = images A gets right and B gets wrong, c = the reverse; p = 1 without discordant pairs.
    Image level: it treats images as independent, which images of one subject are not, so
    it rejects too often when errors cluster in subjects (see paired_bootstrap).
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
    reference: pl.DataFrame,
    other: pl.DataFrame,
    threshold: float = DECISION_THRESHOLD,
    names: tuple[str, str] = ("reference", "other"),
) -> dict:
    """McNemar of two models' correctness at `threshold` on the same images (joined on path)."""
    pair = paired_arrays(reference, other, names)
    y = pair["labels"].astype(bool)
    return mcnemar_exact((pair["reference"] >= threshold) == y, (pair["other"] >= threshold) == y)


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


def _operating_points(labels, scores, spoof_types, v_labels, v_scores, v_types, targets: Sequence[float]) -> tuple[dict, dict]:
    """BPCER at fixed APCER (pooled) and at fixed APCER_PAIS, thresholds set on validation.

    Each entry gives the threshold, the validation rates that fixed it and the test rates
    reached at it: the test APCER (or APCER_PAIS) may exceed the target, which is the point
    of showing it.
    """
    pooled, pais = {}, {}
    for target in targets:
        thr = threshold_at_apcer(v_labels, v_scores, target)
        if not math.isnan(thr):
            m = metrics_at_threshold(labels, scores, thr, spoof_types)
            v = metrics_at_threshold(v_labels, v_scores, thr)
            pooled[format_rate(target)] = {
                "target_apcer": float(target),
                "threshold": thr,
                "val_apcer": v["apcer"],
                "val_bpcer": v["bpcer"],
                "apcer": m["apcer"],
                "apcer_pais": m["apcer_pais"],
                "bpcer": m["bpcer"],
            }
        thr = threshold_at_apcer_pais(v_labels, v_scores, v_types, target)
        if not math.isnan(thr):
            m = metrics_at_threshold(labels, scores, thr, spoof_types)
            v = metrics_at_threshold(v_labels, v_scores, thr, v_types)
            pais[format_rate(target)] = {
                "target_apcer_pais": float(target),
                "threshold": thr,
                "val_apcer_pais": v["apcer_pais"],
                "val_bpcer": v["bpcer"],
                "apcer_pais": m["apcer_pais"],
                "apcer": m["apcer"],
                "bpcer": m["bpcer"],
            }
    return pooled, pais


def evaluate(
    test: pl.DataFrame,
    val: pl.DataFrame | None = None,
    threshold: float = DECISION_THRESHOLD,
    bpcer_at_apcer: Sequence[float] = (0.01, 0.05, 0.10),
    n_resamples: int = 0,
    seed: int = 0,
    level: float = 0.95,
    test_source: str = "test predictions",
    val_source: str = "validation predictions",
) -> dict:
    """Every metric of one model; JSON-ready (NaN -> None).

    Top level: metrics at `threshold` (DECISION_THRESHOLD, the paper's 0.5) with the
    DESIGN.md key names, ROC-AUC, the test EER (threshold free) and the CelebA-Spoof
    benchmark's ``tpr_at_fpr`` (threshold on the same scores, as the benchmark does; details
    in ``tpr_at_fpr_operating_points``). With `val`: ``at_val_eer`` (metrics on test at the
    validation-EER threshold, incl. ``hter``), ``bpcer_at_apcer`` and ``bpcer_at_apcer_pais``
    and ``tpr_at_fpr_val_threshold`` (thresholds set on validation, test rates reached), and
    ``hter`` at top level. With `n_resamples` > 0: ``ci`` intervals.
    """
    check_predictions(test, test_source)
    labels, scores, subjects, spoof_types = _arrays(test)
    out: dict = {
        "n_images": int(len(labels)),
        "n_live": int(np.sum(labels == 0)),
        "n_spoof": int(np.sum(labels == 1)),
        "n_subjects": int(len(np.unique(subjects))),
        "tie_rule": "score >= threshold -> spoof",
        "eer_rule": "nearest ROC point: the observed threshold minimising |APCER - BPCER|, EER = their mean (not interpolated)",
    }
    out["spoof_type_counts"] = {
        type_name(code): int(np.sum((labels == 1) & (spoof_types == code)))
        for code in sorted(np.unique(spoof_types[labels == 1]).tolist())
    }
    out.update(metrics_at_threshold(labels, scores, threshold, spoof_types))
    out["roc_auc"] = roc_auc(labels, scores)
    out["eer"], out["eer_threshold_test"] = eer(labels, scores)
    points = tpr_at_fpr(labels, scores)
    out["tpr_at_fpr"] = {key: p["tpr"] for key, p in points.items()}
    out["tpr_at_fpr_operating_points"] = {key: {k: v for k, v in p.items() if k != "tpr"} for key, p in points.items()}
    out["hter"] = math.nan
    hter_threshold = None
    val_fpr_thresholds: dict[str, float] = {}
    if val is not None:
        check_predictions(val, val_source)
        v_labels, v_scores, _, v_types = _arrays(val)
        val_eer, val_thr = eer(v_labels, v_scores)
        out["val"] = {"n_images": int(len(v_labels)), "eer": val_eer, "eer_threshold": val_thr}
        if not math.isnan(val_thr):
            at = metrics_at_threshold(labels, scores, val_thr, spoof_types)
            at["hter"] = at["acer"]  # HTER = (APCER + BPCER) / 2 at a threshold fixed on validation
            out["at_val_eer"] = at
            out["hter"] = at["hter"]
            hter_threshold = val_thr
        out["bpcer_at_apcer"], out["bpcer_at_apcer_pais"] = _operating_points(
            labels, scores, spoof_types, v_labels, v_scores, v_types, bpcer_at_apcer
        )
        fixed = {}
        for fpr in BENCHMARK_FPRS:
            thr = benchmark_threshold(v_labels, v_scores, fpr)
            if math.isnan(thr):
                continue
            val_fpr_thresholds[fpr_key(fpr)] = thr
            tpr, bpcer = rates_at(labels, scores, thr)
            _, val_bpcer = rates_at(v_labels, v_scores, thr)
            fixed[fpr_key(fpr)] = {"target_fpr": float(fpr), "threshold": thr, "val_bpcer": val_bpcer, "tpr": tpr, "bpcer": bpcer}
        out["tpr_at_fpr_val_threshold"] = fixed
    if n_resamples > 0:
        out["ci"] = {
            "method": "subject-level cluster percentile bootstrap",
            "level": float(level),
            "n_resamples": int(n_resamples),
            "seed": int(seed),
            "tpr_at_fpr_note": (
                "tpr_at_fpr intervals choose the threshold again in every resample (as the benchmark chooses it on "
                "the scores at hand); tpr_at_fpr_val_threshold intervals keep the validation thresholds fixed"
            ),
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
                val_fpr_thresholds=val_fpr_thresholds,
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
