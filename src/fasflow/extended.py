"""Beyond the paper: seed replicates, the identity-leakage ablation, leave-one-attack-type-out.

A *variant* is a family of extra training runs with its own folder under results/:

- ``replicates/seed{seed}``: the scenarios retrained with another seed on the same split;
- ``leakage`` (``leakage/seed{seed}`` for other training seeds): the same subset split at image
  level at random (identities shared);
- ``cross_attack/without_{type}``: S0 trained without one spoof type (train and val).

Each variant holds ``models/{name}/``, ``predictions/{name}.parquet`` (+ ``val/``) and
``metrics/{name}.json`` in the layout of the main study: the workflow trains, predicts and
measures them with the main rules (fasflow.steps). The tables here only combine those files;
every metric comes from fasflow.metrics.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import polars as pl

from . import SPOOF_TYPE_CODES, io
from .errors import ConfigError, DataError
from .metrics import DECISION_THRESHOLD, bootstrap_samples, evaluate, percentile_interval, read_predictions
from .splits import identity_overlap
from .tables import fmt, fmt_ci, write_table

# Metrics summarised across seeds and compared across splits (at DECISION_THRESHOLD, DESIGN.md names).
REPLICATE_METRICS = ("accuracy", "f1", "roc_auc", "apcer", "bpcer", "acer")
# ROC-AUC is threshold free: it shows a ranking effect even where DECISION_THRESHOLD is a poor threshold.
LEAKAGE_METRICS = ("acer", "apcer", "bpcer", "f1", "roc_auc")


# ---------------------------------------------------------------------------
# seed replicates


def _t_quantile(level: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def summarise_seeds(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean, sample SD and the t-interval mean +- t(level, n-1) * SD / sqrt(n) of per-seed values."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    sd = float(x.std(ddof=1)) if n > 1 else math.nan
    half = _t_quantile(level, n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    return {"n_seeds": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def paired_t(values: Sequence[float], reference: Sequence[float]) -> dict:
    """Paired t-test of per-seed values against the reference scenario's (same seeds), n - 1 df.

    NaN t and p when there are fewer than two pairs or the differences do not vary.
    """
    from scipy.stats import t

    d = np.asarray(values, dtype=float) - np.asarray(reference, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    if n < 2 or not sd > 0:
        return {"mean_diff": mean, "t": math.nan, "df": max(n - 1, 0), "p_value": math.nan}
    stat = mean / (sd / math.sqrt(n))
    return {"mean_diff": mean, "t": float(stat), "df": n - 1, "p_value": float(2 * t.sf(abs(stat), n - 1))}


def replicates_table(
    per_seed: Mapping[str, Mapping[int, Mapping]],
    reference: str,
    metrics: Sequence[str] = REPLICATE_METRICS,
    level: float = 0.95,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One row per scenario and metric: per-seed values, mean, SD, t-interval, paired t-test vs `reference`.

    `per_seed` maps scenario -> seed -> metrics dict (results/metrics JSON, at DECISION_THRESHOLD).
    """
    if reference not in per_seed:
        raise ConfigError(f"replicates.reference: {reference!r} is not among the replicated scenarios {list(per_seed)}")
    seeds = sorted(per_seed[reference])
    numbers, text = [], []
    for scenario in sorted(per_seed):
        if sorted(per_seed[scenario]) != seeds:
            raise DataError(f"replicates: {scenario} has seeds {sorted(per_seed[scenario])}, {reference} has {seeds}")
        for metric in metrics:
            values = [_number(per_seed[scenario][s].get(metric)) for s in seeds]
            ref = [_number(per_seed[reference][s].get(metric)) for s in seeds]
            summary = summarise_seeds(values, level)
            test = paired_t(values, ref) if scenario != reference else {"mean_diff": None, "t": None, "df": None, "p_value": None}
            numbers.append(
                {"scenario": scenario, "metric": metric, **{f"seed_{s}": v for s, v in zip(seeds, values)}, **summary, **{f"vs_{reference}_{k}": v for k, v in test.items()}}
            )
            text.append(
                {
                    "scenario": scenario,
                    "metric": metric,
                    "per seed": ", ".join(fmt(v) for v in values),
                    f"mean [{level:.0%} t-CI]": fmt_ci(summary["mean"], _none(summary["ci_low"]), _none(summary["ci_high"])),
                    "SD": fmt(summary["sd"]),
                    f"diff vs {reference}": "-" if test["mean_diff"] is None else f"{test['mean_diff']:+.4f}",
                    "paired t (df)": "-" if test["t"] is None or math.isnan(test["t"]) else f"{test['t']:.2f} ({test['df']})",
                    "p": "-" if test["p_value"] is None or math.isnan(test["p_value"]) else f"{test['p_value']:.3g}",
                }
            )
    return pl.DataFrame(numbers, infer_schema_length=None), pl.DataFrame(text)


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _none(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def replicates_varies(tuned: Sequence[str], retune: bool) -> str:
    """What differs between seeds, for the note: tuned scenarios reuse the main study's parameters unless `retune`."""
    if not tuned:
        return "No replicated scenario is tuned, so only the training seed varies."
    names = ", ".join(tuned)
    if retune:
        return (
            f"Tuned scenarios ({names}) re-ran their Optuna study for every seed (replicates.retune: true), so their "
            "spread includes the variability of the tuning as well as of training."
        )
    return (
        f"Tuned scenarios ({names}) reuse the main study's Optuna parameters (results/optuna/<scenario>/best_params.json) "
        "for every seed (replicates.retune: false): their spread is training randomness (initialisation, data order, "
        "augmentation) at fixed hyperparameters, not the variability of the tuning."
    )


def write_replicates(
    metric_paths: Mapping[str, Mapping[int, str]],
    reference: str,
    level: float,
    csv,
    md,
    figure_paths: Sequence = (),
    *,
    tuned: Sequence[str],
    retune: bool,
) -> pl.DataFrame:
    """Replicates table (CSV, Markdown) and the spread figure from results/metrics JSON per scenario and seed.

    `tuned`: the replicated scenarios that are tuned (config scenarios.<name>.tune); `retune`:
    replicates.retune, whether their Optuna study was re-run per seed. Both only change the note.
    """
    per_seed = {s: {int(seed): _read_metrics(p) for seed, p in seeds.items()} for s, seeds in metric_paths.items()}
    numbers, text = replicates_table(per_seed, reference, level=level)
    n = len(next(iter(per_seed.values())))
    note = (
        f"{n} seeds, each scenario retrained per seed on the same subject-disjoint split; metrics on the test split "
        f"at threshold {DECISION_THRESHOLD:g}. {replicates_varies(tuned, retune)} Distilled scenarios use the main "
        f"teacher. The interval is mean +- t(0.975, n-1) * SD / sqrt(n) across seeds (training "
        f"variability only; the test set is fixed). The paired t-test compares each scenario's per-seed value with "
        f"{reference}'s on the same seed and has n - 1 = {n - 1} degree(s) of freedom"
        + (": with 2 seeds it is very weak, read it as a sign, not a verdict." if n == 2 else ".")
    )
    write_table(numbers, text, csv, md, title="Seed replicates", note=note)
    if figure_paths:
        replicates_figure(per_seed, figure_paths)
    return numbers


def _read_metrics(path) -> dict:
    if not Path(path).is_file():
        raise DataError(f"{path}: metrics file not found")
    return io.read_json(path)


def replicates_figure(per_seed: Mapping[str, Mapping[int, Mapping]], paths: Sequence, metrics: Sequence[str] = ("f1", "apcer", "bpcer", "acer")) -> None:
    """One panel per metric: a point per seed and a bar for the mean, per scenario."""
    from .figures import plt, save_figure

    scenarios = sorted(per_seed)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2))
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for i, scenario in enumerate(scenarios):
            seeds = sorted(per_seed[scenario])
            values = np.array([_number(per_seed[scenario][s].get(metric)) for s in seeds])
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(i + jitter, values, s=18, color="tab:blue", alpha=0.8, label="one seed" if i == 0 else None)
            ax.hlines(np.nanmean(values), i - 0.25, i + 0.25, color="black", lw=2, label="mean" if i == 0 else None)
        ax.set_xticks(range(len(scenarios)), scenarios)
        ax.set_title(metric.upper() if metric != "f1" else "F1")
        ax.set_xlabel("scenario")
        ax.grid(axis="y", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel(f"value on the test split (threshold {DECISION_THRESHOLD:g})")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle("Spread across training seeds")
    fig.tight_layout()
    save_figure(fig, paths)


# ---------------------------------------------------------------------------
# identity leakage


def _bootstrap(df: pl.DataFrame, n_resamples: int, seed: int) -> dict[str, np.ndarray]:
    return bootstrap_samples(
        df["label"].to_numpy(), df["score"].cast(pl.Float64).to_numpy(), df["subject_id"].cast(pl.Utf8).to_numpy(),
        df["spoof_type"].fill_null(-1).to_numpy(), n_resamples=n_resamples, seed=seed,
    )


def _same_images(frames: Sequence[pl.DataFrame], where: str) -> None:
    """Seeds of one side are averaged resample by resample: they must score the same test images."""
    paths = [sorted(f["path"].to_list()) for f in frames]
    if any(p != paths[0] for p in paths[1:]):
        raise DataError(f"leakage: {where}: the training seeds' predictions cover different test images")


def leakage_table(
    predictions: Mapping[str, Mapping[str, Sequence[pl.DataFrame]]],
    overlap: Mapping[str, dict],
    seeds: Sequence[int],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Metrics of each scenario on the subject-disjoint and the random split and their difference.

    `predictions` maps scenario -> {'disjoint': test predictions, 'random': test predictions},
    one frame per training seed (`seeds`, in the same order on both sides); `overlap` maps
    'disjoint'/'random' -> identity_overlap() of that split. A side's value is the mean over its
    seeds, so one unlucky training run cannot make or hide the effect. Each side is bootstrapped
    over its own test subjects, every seed on the same resamples (the seed's metric is averaged
    resample by resample); the two test sets hold different images (and mostly different
    subjects), so the sides cannot be paired: the difference's interval is the percentile interval
    of (random - disjoint) over independent resamples. The interval is over test subjects; the
    spread between training seeds is in the per-seed columns.
    """
    numbers, text = [], []
    seen = {side: overlap[side]["fraction_test_subjects_seen"] for side in ("disjoint", "random")}
    for scenario in sorted(predictions):
        point, samples = {}, {}
        for k, side in enumerate(("disjoint", "random")):
            frames = list(predictions[scenario][side])
            if len(frames) != len(seeds):
                raise DataError(f"leakage: {scenario} {side}: {len(frames)} prediction files for {len(seeds)} training seeds")
            _same_images(frames, f"{scenario} {side}")
            point[side] = [evaluate(f, threshold=DECISION_THRESHOLD) for f in frames]
            # One bootstrap seed per side: every training seed is scored on the same resamples.
            per_seed = [_bootstrap(f, n_resamples, seed + k) for f in frames]
            samples[side] = {m: np.mean([b[m] for b in per_seed], axis=0) for m in LEAKAGE_METRICS}
        for metric in LEAKAGE_METRICS:
            row = {"scenario": scenario, "metric": metric, "training_seeds": " ".join(map(str, seeds))}
            for side in ("disjoint", "random"):
                values = [_number(p[metric]) for p in point[side]]
                row[side] = float(np.mean(values))
                row[f"{side}_ci_low"], row[f"{side}_ci_high"] = percentile_interval(samples[side][metric], level)
                for s, v in zip(seeds, values):
                    row[f"{side}_seed_{s}"] = v
            row["difference"] = row["random"] - row["disjoint"]
            row["difference_ci_low"], row["difference_ci_high"] = percentile_interval(samples["random"][metric] - samples["disjoint"][metric], level)
            row["test_subjects_seen_disjoint"] = seen["disjoint"]
            row["test_subjects_seen_random"] = seen["random"]
            numbers.append(row)
            text.append(
                {
                    "scenario": scenario,
                    "metric": {"f1": "F1", "roc_auc": "ROC-AUC"}.get(metric, metric.upper()),
                    "subject-disjoint": fmt_ci(row["disjoint"], row["disjoint_ci_low"], row["disjoint_ci_high"]),
                    "random (image level)": fmt_ci(row["random"], row["random_ci_low"], row["random_ci_high"]),
                    "random - disjoint": f"{row['difference']:+.4f} [{row['difference_ci_low']:+.4f}, {row['difference_ci_high']:+.4f}]",
                    "per seed": ", ".join(f"{row[f'random_seed_{s}'] - row[f'disjoint_seed_{s}']:+.3f}" for s in seeds),
                }
            )
    return pl.DataFrame(numbers), pl.DataFrame(text)


def write_leakage(
    predictions: Mapping[str, Mapping[str, Sequence[str]]],
    manifests: Mapping[str, tuple[str, str]],
    seeds: Sequence[int],
    n_resamples: int,
    seed: int,
    level: float,
    csv,
    md,
) -> pl.DataFrame:
    """Leakage table from the test predictions on both splits, one file per training seed in `seeds`;
    `manifests` maps side -> (train, test) parquet."""
    frames = {s: {side: [read_predictions(p) for p in paths] for side, paths in sides.items()} for s, sides in predictions.items()}
    overlap = {}
    for side, (train, test) in manifests.items():
        overlap[side] = identity_overlap(pl.read_parquet(train), pl.read_parquet(test))
    numbers, text = leakage_table(frames, overlap, seeds, n_resamples, seed, level)
    r, d = overlap["random"], overlap["disjoint"]
    trained = f"training seed {seeds[0]}" if len(seeds) == 1 else f"the mean over training seeds {', '.join(map(str, seeds))} (one model per seed and split)"
    note = (
        f"Test identities also seen in training: subject-disjoint split {d['test_subjects_seen_in_train']}/{d['test_subjects']} "
        f"subjects ({d['fraction_test_images_seen']:.0%} of test images); random image-level split "
        f"{r['test_subjects_seen_in_train']}/{r['test_subjects']} subjects ({r['fraction_test_images_seen']:.0%} of test images). "
        f"Same subset, same fractions, same recipe; each split's value is {trained}; metrics at threshold "
        f"{DECISION_THRESHOLD:g}. Intervals: {level:.0%} subject-level percentile bootstrap ({n_resamples} resamples), each split "
        "resampled over its own test subjects (every seed on the same resamples); the two test sets differ, so the difference's "
        "interval uses independent resamples of the two sides. 'per seed': random - disjoint of each training seed. A positive "
        "difference in F1 (negative in the error rates) is the optimism a random split adds."
    )
    write_table(numbers, text, csv, md, title="Identity leakage: random vs subject-disjoint split", note=note)
    return numbers


# ---------------------------------------------------------------------------
# leave one attack type out


def live_and_type(df: pl.DataFrame, code: int) -> pl.DataFrame:
    """Live images plus the attacks of one spoof type."""
    return df.filter((pl.col("label") == 0) | (pl.col("spoof_type") == code))


def cross_attack_table(
    unseen: Mapping[str, pl.DataFrame], seen: pl.DataFrame, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """APCER on each left-out type (model trained without it) next to the main model's APCER on it.

    `unseen` maps type name -> test predictions of the model trained without that type;
    `seen` is the main S0's test predictions. Both are cut to live + that type.
    """
    numbers, text = [], []
    for name in unseen:
        code = SPOOF_TYPE_CODES[name]
        left_out = live_and_type(unseen[name], code)
        main = live_and_type(seen, code)
        n_attacks = int((left_out["label"] == 1).sum())
        if n_attacks == 0:
            raise DataError(f"cross_attack: the test split has no image of spoof type {name}")
        res = {side: evaluate(df, threshold=DECISION_THRESHOLD, n_resamples=n_resamples, seed=seed, level=level) for side, df in (("unseen", left_out), ("seen", main))}
        row = {"spoof_type": name, "test_live": int((left_out["label"] == 0).sum()), "test_attacks": n_attacks}
        for side in ("unseen", "seen"):
            for metric in ("apcer", "bpcer", "acer"):
                row[f"{metric}_{side}"] = _number(res[side][metric])
                lo, hi = ((res[side].get("ci") or {}).get("intervals") or {}).get(metric) or (None, None)
                row[f"{metric}_{side}_ci_low"], row[f"{metric}_{side}_ci_high"] = _number(lo), _number(hi)
        row["apcer_increase"] = row["apcer_unseen"] - row["apcer_seen"]
        numbers.append(row)
        text.append(
            {
                "left-out type": name,
                "live / attacks": f"{row['test_live']} / {n_attacks}",
                "APCER unseen": fmt_ci(row["apcer_unseen"], _none(row["apcer_unseen_ci_low"]), _none(row["apcer_unseen_ci_high"])),
                "APCER seen (main S0)": fmt_ci(row["apcer_seen"], _none(row["apcer_seen_ci_low"]), _none(row["apcer_seen_ci_high"])),
                "unseen - seen": f"{row['apcer_increase']:+.4f}",
                "BPCER unseen": fmt(row["bpcer_unseen"]),
                "BPCER seen": fmt(row["bpcer_seen"]),
            }
        )
    return pl.DataFrame(numbers), pl.DataFrame(text)


def write_cross_attack(unseen_paths: Mapping[str, str], seen_path, n_resamples: int, seed: int, level: float, csv, md) -> pl.DataFrame:
    unseen = {name: read_predictions(p) for name, p in unseen_paths.items()}
    numbers, text = cross_attack_table(unseen, read_predictions(seen_path), n_resamples, seed, level)
    note = (
        "For each spoof type k, S0 was retrained without any image of type k (train and validation) and tested on the "
        "live test images plus the type-k attacks; 'seen' is the main S0 (trained on every type) on the same images. "
        f"Threshold {DECISION_THRESHOLD:g}; {level:.0%} subject-level bootstrap intervals ({n_resamples} resamples). APCER unseen > seen is "
        "the cost of meeting an attack type never seen in training; BPCER differs only because the models differ."
    )
    write_table(numbers, text, csv, md, title="Leave-one-attack-type-out (S0)", note=note)
    return numbers
