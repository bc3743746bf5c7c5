"""The paper's tables from metrics JSON files: CSV (numbers, CI bounds as columns) and Markdown.

Rows are models in the order given (scenarios, then the teacher as a reference).
Column names follow the paper; CSV keeps raw numbers with `<column>_ci_lo` /
`<column>_ci_hi` next to each column that has a bootstrap interval, Markdown shows
"0.9943 [0.9901, 0.9968]".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import polars as pl

from . import SPOOF_TYPES
from .errors import DataError
from .io import atomic_path, read_json, write_text
from .metrics import DECISION_THRESHOLD, format_rate

DIGITS = 4

# (column, metrics key) pairs
TABLE2_COLUMNS = [
    ("Accuracy", "accuracy"),
    ("Precision", "precision"),
    ("Recall", "recall"),
    ("F1-score", "f1"),
    ("ROC-AUC", "roc_auc"),
]
TABLE3_COLUMNS = [
    ("APCER", "apcer"),
    ("BPCER", "bpcer"),
    ("ACER", "acer"),
    ("APCER_PAIS", "apcer_pais"),
    ("ACER_ISO", "acer_iso"),
    ("EER", "eer"),
    ("HTER", "hter"),
]
SPOOF_TYPE_NAMES = [name for code, name in sorted(SPOOF_TYPES.items()) if code != 0]


# ---------------------------------------------------------------------------
# formatting and writing


def fmt(value, digits: int = DIGITS) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ci(value, lo, hi, digits: int = DIGITS) -> str:
    """0.99433, 0.9901, 0.9968 -> '0.9943 [0.9901, 0.9968]'."""
    if lo is None or hi is None:
        return fmt(value, digits)
    return f"{fmt(value, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def fmt_general(value) -> str:
    """Hyperparameters: 3 significant digits (1e-4 -> 0.0001, 9.73e-5 -> 9.73e-05)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def to_markdown(df: pl.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of string cells."""
    header = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(df.width)) + "|"
    rows = ["| " + " | ".join("-" if v is None else str(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join([header, rule, *rows]) + "\n"


def write_table(numbers: pl.DataFrame, text: pl.DataFrame, csv_path, md_path, title: str = "", note: str = "") -> None:
    """CSV of `numbers` and Markdown of `text`, both written atomically."""
    with atomic_path(csv_path) as tmp:
        numbers.write_csv(tmp, float_precision=6)
    parts = [f"# {title}\n\n" if title else "", to_markdown(text), f"\n{note}\n" if note else ""]
    write_text(md_path, "".join(parts))


def load_metrics(paths: Mapping[str, str | Path]) -> dict[str, dict]:
    """name -> metrics dict, from results/metrics/{name}.json files."""
    out = {}
    for name, path in paths.items():
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: metrics file not found")
        out[name] = read_json(path)
    return out


# ---------------------------------------------------------------------------
# tables 2 and 3 and APCER per spoof type


def _interval(metrics: dict, key: str) -> tuple:
    intervals = (metrics.get("ci") or {}).get("intervals") or {}
    lo, hi = intervals.get(key) or (None, None)
    return lo, hi


def _metric_table(metrics: dict[str, dict], columns: list[tuple[str, str]]) -> tuple[list[dict], list[dict]]:
    numbers, text = [], []
    for name, m in metrics.items():
        num: dict = {"Scenario": name}
        txt: dict = {"Scenario": name}
        for column, key in columns:
            lo, hi = _interval(m, key)
            num[column] = m.get(key)
            num[f"{column}_ci_lo"] = lo
            num[f"{column}_ci_hi"] = hi
            txt[column] = fmt_ci(m.get(key), lo, hi)
        numbers.append(num)
        text.append(txt)
    return numbers, text


def _frame(rows: list[dict]) -> pl.DataFrame:
    # Columns in first-row order; all-null columns stay Float64 so the CSV schema is stable.
    if not rows:
        return pl.DataFrame()
    columns = list(rows[0])
    data = {c: [r.get(c) for r in rows] for c in columns}
    series = []
    for c in columns:
        values = data[c]
        if c == "Scenario" or any(isinstance(v, str) for v in values):
            series.append(pl.Series(c, [None if v is None else str(v) for v in values], dtype=pl.Utf8))
        else:
            series.append(pl.Series(c, [None if v is None else float(v) for v in values], dtype=pl.Float64))
    return pl.DataFrame(series)


THRESHOLD_NOTE = (
    f"Spoof is the positive class; decision threshold {DECISION_THRESHOLD:g}, the paper's "
    f"(P(spoof) >= {DECISION_THRESHOLD:g} is spoof: the argmax of the softmax), the same for every table, figure and for model selection."
)


def ci_note(metrics: dict[str, dict]) -> str:
    for m in metrics.values():
        ci = m.get("ci")
        if ci:
            return (
                f"Brackets: {ci['level'] * 100:g}% {ci['method']} intervals "
                f"({ci['n_resamples']} resamples, seed {ci['seed']}). {THRESHOLD_NOTE}"
            )
    return THRESHOLD_NOTE


MCNEMAR_LABEL = "image-level, ignores subject clustering"
# Table 2's metrics that are also compared pairwise (the family holds every COMPARISON_METRICS row).
TABLE2_COMPARED = [("F1", "f1"), ("ROC-AUC", "roc_auc")]


def _comparison_cell(row: Mapping) -> str:
    """'+0.0012 [-0.0040, 0.0061], p_Holm 0.84'."""
    if row.get("difference") is None or math.isnan(row["difference"]):
        return "-"
    ci = "" if row["ci_low"] is None or math.isnan(row["ci_low"]) else f" [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
    p = "-" if math.isnan(row["p_holm"]) else f"{row['p_holm']:.3g}"
    return f"{row['difference']:+.4f}{ci}, p_Holm {p}"


def table2_classification(
    metrics: dict[str, dict],
    mcnemar: Mapping[str, dict] | None = None,
    reference: str = "S0",
    comparisons: Sequence[Mapping] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Accuracy, precision, recall, F1, ROC-AUC with CIs; paired bootstrap and McNemar against `reference`.

    `comparisons` are compare_to_reference() rows: Table 2 shows its F1 and ROC-AUC rows
    (difference to the reference, interval, Holm-adjusted p over the whole family).
    """
    numbers, text = _metric_table(metrics, TABLE2_COLUMNS)
    by_key = {(row["model"], row["metric"]): row for row in comparisons or ()}
    if comparisons is not None:
        for num, txt in zip(numbers, text):
            for column, key in TABLE2_COMPARED:
                row = by_key.get((num["Scenario"], key))
                name = f"{column} - {reference}"
                num[name] = None if row is None else row["difference"]
                num[f"{name}_ci_lo"] = None if row is None else row["ci_low"]
                num[f"{name}_ci_hi"] = None if row is None else row["ci_high"]
                num[f"{name}_p_holm"] = None if row is None else row["p_holm"]
                txt[f"{name} [CI], Holm p (paired subject bootstrap)"] = "-" if row is None else _comparison_cell(row)
    if mcnemar is not None:
        column = f"McNemar p vs {reference} ({MCNEMAR_LABEL})"
        for num, txt in zip(numbers, text):
            result = mcnemar.get(num["Scenario"])
            p = None if result is None else result["p_value"]
            num[column] = p
            num["Discordant (ref right, other wrong)"] = None if result is None else result["a_right_b_wrong"]
            num["Discordant (ref wrong, other right)"] = None if result is None else result["a_wrong_b_right"]
            txt[column] = "-" if p is None else (
                f"{p:.3g} ({result['a_right_b_wrong']}/{result['a_wrong_b_right']})"
            )
    return _frame(numbers), _frame(text)


def _reached(point: Mapping | None, key: str):
    return None if point is None else point.get(key)


def table3_antispoofing(
    metrics: dict[str, dict], bpcer_at_apcer: Sequence[float] = (0.01, 0.05, 0.10)
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """APCER, BPCER, ACER (paper, pooled) and APCER_PAIS, ACER_ISO, EER, HTER, then the operating points.

    For each APCER target: BPCER on test at the threshold set on validation for pooled APCER
    <= target, next to the pooled APCER that threshold reaches on test; and the same with the
    worst species (APCER_PAIS <= target), next to the APCER_PAIS reached.
    """
    numbers, text = _metric_table(metrics, TABLE3_COLUMNS)
    for m, num, txt in zip(metrics.values(), numbers, text):
        # (metrics key, APCER it constrains, column label): pooled first, then the worst species
        for key, apcer, label in (("bpcer_at_apcer", "apcer", "APCER"), ("bpcer_at_apcer_pais", "apcer_pais", "APCER_PAIS")):
            points = m.get(key) or {}
            for target in bpcer_at_apcer:
                column = f"BPCER@{label}={format_rate(target)}"
                point = points.get(format_rate(target))
                num[column] = _reached(point, "bpcer")
                num[f"{column} {label} reached"] = _reached(point, apcer)
                txt[f"{column} ({label} reached)"] = _with_reached(_reached(point, "bpcer"), _reached(point, apcer))
    return _frame(numbers), _frame(text)


def _with_reached(value, reached) -> str:
    """'0.0123 (0.0098)': a rate and, in brackets, the rate the threshold reached on test."""
    return "-" if value is None else f"{fmt(value)} ({fmt(reached)})"


def apcer_per_type_table(metrics: dict[str, dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """APCER of each spoof type (PAI species) at DECISION_THRESHOLD; '-' where the test split has none."""
    counts: dict[str, int] = {}
    numbers, text = [], []
    for name, m in metrics.items():
        per_type = m.get("apcer_per_type") or {}
        counts.update({k: v for k, v in (m.get("spoof_type_counts") or {}).items()})
        num: dict = {"Scenario": name}
        txt: dict = {"Scenario": name}
        for t in SPOOF_TYPE_NAMES:
            num[t] = per_type.get(t)
            txt[t] = fmt(per_type.get(t))
        lo, hi = _interval(m, "apcer_pais")
        num["APCER_PAIS"] = m.get("apcer_pais")
        num["APCER_PAIS_ci_lo"], num["APCER_PAIS_ci_hi"] = lo, hi
        txt["APCER_PAIS"] = fmt_ci(m.get("apcer_pais"), lo, hi)
        numbers.append(num)
        text.append(txt)
    text_frame = _frame(text)
    if counts:
        text_frame = text_frame.rename({t: f"{t} (n={counts.get(t, 0)})" for t in SPOOF_TYPE_NAMES})
    return _frame(numbers), text_frame


# ---------------------------------------------------------------------------
# paired comparisons with the reference


COMPARISON_NAMES = {"acer": "ACER", "apcer": "APCER", "bpcer": "BPCER", "f1": "F1", "roc_auc": "ROC-AUC"}


def comparisons_table(rows: Sequence[Mapping], reference: str, level: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One row per (model, metric) of compare_to_reference: values, difference, interval, p, Holm p, decision at 1 - level."""
    alpha = round(1.0 - level, 10)  # 1 - 0.95 is 0.050000000000000044 in floating point
    numeric = ["model", "metric", reference, "model_value", "difference", "difference_ci_lo", "difference_ci_hi", "p_value", "p_holm", "differs", "resamples_defined"]
    shown = ["Model", "Metric", reference, "Model value", f"Model - {reference} [{level:.0%} CI]", "p", "p (Holm)", f"Differs at {alpha:.0%} (Holm)"]
    if not rows:
        return pl.DataFrame(schema={c: pl.Utf8 for c in numeric}), pl.DataFrame(schema={c: pl.Utf8 for c in shown})
    numbers, text = [], []
    for row in rows:
        decided = not math.isnan(row["p_holm"]) and row["p_holm"] < alpha
        numbers.append(
            {
                "model": row["model"],
                "metric": row["metric"],
                f"{reference}": row["reference"],
                "model_value": row["other"],
                "difference": row["difference"],
                "difference_ci_lo": row["ci_low"],
                "difference_ci_hi": row["ci_high"],
                "p_value": row["p_value"],
                "p_holm": row["p_holm"],
                "differs": "yes" if decided else "no",
                "resamples_defined": row["n_resamples_defined"],
            }
        )
        text.append(
            {
                "Model": row["model"],
                "Metric": COMPARISON_NAMES.get(row["metric"], row["metric"]),
                reference: fmt(row["reference"]),
                "Model value": fmt(row["other"]),
                f"Model - {reference} [{level:.0%} CI]": fmt_ci(row["difference"], row["ci_low"], row["ci_high"]),
                "p": fmt(row["p_value"], 3),
                "p (Holm)": fmt(row["p_holm"], 3),
                f"Differs at {alpha:.0%} (Holm)": "yes" if decided else "no",
            }
        )
    return _frame(numbers), _frame(text)


def comparison_note(reference: str, n_models: int, n_resamples: int, seed: int, level: float) -> str:
    """How the paired comparisons were made, including the smallest p their resamples allow."""
    from .metrics import COMPARISON_METRICS, p_value_floor, resamples_for_holm

    alpha = round(1.0 - level, 10)  # 1 - 0.95 is 0.050000000000000044 in floating point
    family = n_models * len(COMPARISON_METRICS)
    note = (
        f"Paired subject-level bootstrap of the difference model - {reference}, each model against {reference} on the same "
        f"test images ({n_resamples} resamples, seed {seed}): every resample draws test subjects with replacement and "
        "scores both models on the same drawn subjects, so subjects that are hard for both cancel out and the clustering "
        f"of errors within a subject is kept. Interval: {level:.0%} percentile interval of the resampled differences. "
        "p: two-sided percentile-bootstrap p-value, twice the share of resampled differences on the far side of zero "
        "(zeros count on both sides) with the +1 correction, 2 (1 + min(#d <= 0, #d >= 0)) / (B + 1). "
        f"Holm's step-down correction over the whole family of {family} comparisons ({n_models} model(s) x "
        f"{len(COMPARISON_METRICS)} metrics: {', '.join(COMPARISON_NAMES[m] for m in COMPARISON_METRICS)}) keeps the "
        f"chance of any false 'differs' at {alpha:.0%}. Error rates: a negative difference means fewer errors than "
        f"{reference}; F1 and ROC-AUC: positive is better. Metrics at threshold {DECISION_THRESHOLD:g} (ROC-AUC is threshold free)."
    )
    floor = p_value_floor(n_resamples)
    if family and family * floor >= alpha:
        note += (
            f" Caution: with {n_resamples} resamples no p can fall below {floor:.3g}, so Holm over {family} comparisons "
            f"cannot reach {alpha:.0%}; at least {resamples_for_holm(family, alpha)} resamples (evaluate.bootstrap_n) are needed."
        )
    return note


def _read_predictions(paths: Mapping[str, str | Path]) -> dict[str, pl.DataFrame]:
    from .metrics import read_predictions

    return {name: read_predictions(path) for name, path in paths.items()}


def write_comparisons(prediction_paths: Mapping[str, str | Path], reference: str, n_resamples: int, seed: int, level: float, csv, md) -> pl.DataFrame:
    """Workflow step: results/tables/comparisons.{csv,md}, every model against `reference` (paired bootstrap, Holm).

    `prediction_paths` maps model name -> test predictions parquet (the reference included);
    `n_resamples`, `seed`, `level` are evaluate.bootstrap_n, evaluate.seed, evaluate.ci_level.
    """
    from .metrics import COMPARISON_METRICS, compare_to_reference, resamples_for_holm

    frames = _read_predictions(prediction_paths)  # read (and checked) even when nothing is resampled
    title = f"Paired comparisons with {reference} on the test split"
    if n_resamples < 1:
        # An explicit empty table rather than a failed study: intervals are off by configuration.
        numbers, text = comparisons_table([], reference, level)
        needed = resamples_for_holm((len(frames) - 1) * len(COMPARISON_METRICS), round(1.0 - level, 10))
        note = f"No paired comparisons: evaluate.bootstrap_n is 0 (bootstrap off). Set it to at least {needed} to compare the models."
        write_table(numbers, text, csv, md, title, note)
        return numbers
    rows = compare_to_reference(frames, reference, n_resamples, seed, level)
    numbers, text = comparisons_table(rows, reference, level)
    note = comparison_note(reference, len(frames) - 1, n_resamples, seed, level) + (
        " McNemar's test (Table 2) compares single images and ignores that images of one subject share errors; it is "
        "shown there for reference only."
    )
    write_table(numbers, text, csv, md, title, note)
    return numbers


# ---------------------------------------------------------------------------
# the CelebA-Spoof benchmark (protocol) table

# The dataset paper's intra-dataset benchmark (CelebA-Spoof, ECCV 2020, AENet_C,S,G with a ResNet-18
# backbone, official intra_test protocol), as printed in its table (reproduced in the dataset's
# repository as fig/intra_dataset_test.png). Percentages in the paper; fractions here.
PUBLISHED_AENET_INTRA_TEST = {
    "tpr_at_fpr": {"0.01": 0.989, "0.005": 0.973, "0.001": 0.873},
    "roc_auc": 0.9989,
    "eer": 0.009,
    "apcer": 0.0229,
    "bpcer": 0.0096,
    "acer": 0.0163,
}
PROTOCOL_COLUMNS = [("APCER", "apcer"), ("BPCER", "bpcer"), ("ACER", "acer"), ("ROC-AUC", "roc_auc"), ("EER", "eer")]


def _published_reference_line() -> str:
    ref = PUBLISHED_AENET_INTRA_TEST
    tpr = ", ".join(f"TPR@FPR={format_rate(float(k))} {v:.1%}" for k, v in ref["tpr_at_fpr"].items())
    return (
        f"Reference, the dataset paper's published AENet (C,S,G; ResNet-18) intra-test result: APCER {ref['apcer']:.2%}, "
        f"BPCER {ref['bpcer']:.2%}, ACER {ref['acer']:.2%}, AUC {ref['roc_auc']:.4f}, EER {ref['eer']:.1%}, {tpr} "
        "(CelebA-Spoof, ECCV 2020, intra-dataset benchmark table)."
    )


def protocol_table(metrics: dict[str, dict], fprs: Sequence[float] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """APCER, BPCER, ACER, ROC-AUC, EER and TPR@FPR (same-scores and validation thresholds) for every model."""
    from .metrics import BENCHMARK_FPRS, fpr_key

    fprs = BENCHMARK_FPRS if fprs is None else fprs
    numbers, text = _metric_table(metrics, PROTOCOL_COLUMNS)
    for (name, m), num, txt in zip(metrics.items(), numbers, text):
        intervals = (m.get("ci") or {}).get("intervals") or {}
        for fpr in fprs:
            key, rate = fpr_key(fpr), format_rate(fpr)
            column = f"TPR@FPR={rate}"
            value = (m.get("tpr_at_fpr") or {}).get(key)
            lo, hi = (intervals.get("tpr_at_fpr") or {}).get(key) or (None, None)
            num[column], num[f"{column}_ci_lo"], num[f"{column}_ci_hi"] = value, lo, hi
            num[f"{column} BPCER reached"] = ((m.get("tpr_at_fpr_operating_points") or {}).get(key) or {}).get("bpcer")
            txt[column] = fmt_ci(value, lo, hi)
        for fpr in fprs:
            key, rate = fpr_key(fpr), format_rate(fpr)
            column = f"TPR@FPR={rate} (val threshold)"
            point = (m.get("tpr_at_fpr_val_threshold") or {}).get(key) or {}
            lo, hi = (intervals.get("tpr_at_fpr_val_threshold") or {}).get(key) or (None, None)
            num[column], num[f"{column}_ci_lo"], num[f"{column}_ci_hi"] = point.get("tpr"), lo, hi
            num[f"{column} BPCER reached"] = point.get("bpcer")
            txt[f"{column} [CI] (test BPCER reached)"] = (
                "-" if point.get("tpr") is None else f"{fmt_ci(point['tpr'], lo, hi)} ({fmt(point.get('bpcer'))})"
            )
    return _frame(numbers), _frame(text)


def write_protocol_table(metric_paths: Mapping[str, str | Path], protocol: str, csv, md) -> pl.DataFrame:
    """Workflow step: results/tables/protocol.{csv,md}, the CelebA-Spoof benchmark metrics of every model.

    `metric_paths` maps model name -> metrics JSON (table order); `protocol` names the test
    protocol the metrics come from (dataset.protocol, e.g. 'intra_test'), stated in the title.
    """
    metrics = load_metrics(metric_paths)
    numbers, text = protocol_table(metrics)
    comparable = (
        "Same protocol as the reference."
        if protocol == "intra_test"
        else f"This run's test set ({protocol}) is not the intra_test protocol's, so the reference is context, not a like-for-like comparison."
    )
    note = (
        f"{ci_note(metrics)} TPR@FPR is the CelebA-Spoof benchmark's metric with spoof positive: TPR = 1 - APCER at the "
        "threshold where BPCER (the FPR) reaches 1%, 0.5%, 0.1%. As in the benchmark's official code the threshold is chosen "
        "on the same test scores: the k-th highest live score, k = max(1, floor(FPR x live images)); images scoring at it "
        "count as spoof, so ties or a small live set can push BPCER above the target (the BPCER reached is in the CSV). "
        "Its intervals choose the threshold again in every resample. The '(val threshold)' columns fix the same rule's "
        "threshold on the validation split and show the test BPCER it reaches. EER: nearest ROC point (no interpolation). "
        f"{_published_reference_line()} {comparable}"
    )
    write_table(numbers, text, csv, md, f"CelebA-Spoof benchmark metrics on the test split (protocol: {protocol})", note)
    return numbers


# ---------------------------------------------------------------------------
# table 1


def table1_configuration(
    summaries: Mapping[str, dict],
    scenarios: Mapping[str, dict],
    best_params: Mapping[str, dict] | None = None,
    tune: Mapping | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The hyperparameters each scenario was actually trained with (from summary.json).

    `scenarios` is config["scenarios"] (whether a scenario was distilled/tuned); `best_params`
    the Optuna results of tuned scenarios; `tune` config["tune"] if that section exists
    (trial count `n_trials`, trial patience `patience`).
    """
    best_params = best_params or {}
    tune = tune or {}
    numbers, text = [], []
    for name, summary in summaries.items():
        hyper = summary.get("hyperparameters") or {}
        cfg = scenarios.get(name, {})
        tuned = bool(cfg.get("tune"))
        distilled = bool(hyper.get("distill", cfg.get("distill")))
        trials = tune.get("n_trials") if tuned else None
        patience = hyper.get("patience")
        trial_patience = tune.get("patience") if tuned else None
        row = {
            "Scenario": name,
            "Optimizer": hyper.get("optimizer"),
            "Learning rate": hyper.get("lr"),
            "Weight decay": hyper.get("weight_decay"),
            "Dropout": hyper.get("dropout", summary.get("dropout")),
            "Alpha": hyper.get("alpha") if distilled else None,
            "Temperature": hyper.get("temperature") if distilled else None,
            "Optuna trials": trials,
            "Early stopping patience": patience,
            "Trial patience": trial_patience,
            "Best epoch": summary.get("best_epoch"),
            "Val F1 (best epoch)": (summary.get("val_metrics") or {}).get("f1"),
        }
        numbers.append(row)
        params = best_params.get(name)
        txt = {k: fmt_general(v) for k, v in row.items()}
        txt["Optimizer"] = "AdamW" if row["Optimizer"] == "adamw" else fmt_general(row["Optimizer"])
        if tuned:
            txt["Scenario"] = f"{name} (tuned)"
        if distilled:
            txt["Scenario"] = f"{txt['Scenario']} (KD)"
        if tuned and trials is None:
            txt["Optuna trials"] = "-" if params is None else fmt_general(params.get("n_trials"))
        txt["Early stopping patience"] = (
            f"{fmt_general(trial_patience)} in trials / {fmt_general(patience)} final"
            if trial_patience is not None
            else fmt_general(patience)
        )
        txt.pop("Trial patience")
        txt["Val F1 (best epoch)"] = fmt(row["Val F1 (best epoch)"])
        text.append(txt)
    numbers_frame = pl.DataFrame(
        numbers,
        schema={
            "Scenario": pl.Utf8,
            "Optimizer": pl.Utf8,
            "Learning rate": pl.Float64,
            "Weight decay": pl.Float64,
            "Dropout": pl.Float64,
            "Alpha": pl.Float64,
            "Temperature": pl.Float64,
            "Optuna trials": pl.Int64,
            "Early stopping patience": pl.Int64,
            "Trial patience": pl.Int64,
            "Best epoch": pl.Int64,
            "Val F1 (best epoch)": pl.Float64,
        },
        orient="row",
    )
    return numbers_frame, pl.DataFrame(text, orient="row")


# ---------------------------------------------------------------------------
# entry points used by the workflow scripts


def write_table1(summary_paths: Mapping[str, str], scenarios: Mapping, best_param_paths: Mapping[str, str], tune, csv, md):
    summaries = {name: read_json(path) for name, path in summary_paths.items()}
    best = {name: read_json(path) for name, path in best_param_paths.items() if Path(path).is_file()}
    numbers, text = table1_configuration(summaries, scenarios, best, tune)
    write_table(
        numbers,
        text,
        csv,
        md,
        "Table 1. Training configuration of each scenario (as used)",
        "Values read from each model's summary.json (tuned scenarios: the Optuna best parameters).",
    )


def write_table2(
    metric_paths: Mapping[str, str],
    prediction_paths: Mapping[str, str],
    reference: str,
    n_resamples: int,
    seed: int,
    level: float,
    csv,
    md,
):
    """Table 2; the paired bootstrap uses evaluate.bootstrap_n / seed / ci_level, as the comparisons table does."""
    from .metrics import compare_to_reference, paired_mcnemar

    metrics = load_metrics(metric_paths)
    mcnemar = comparisons = None
    note = ci_note(metrics)
    if reference in prediction_paths:
        frames = _read_predictions(prediction_paths)
        mcnemar = {name: paired_mcnemar(frames[reference], df, names=(reference, name)) for name, df in frames.items() if name != reference}
        if n_resamples > 0:
            comparisons = compare_to_reference(frames, reference, n_resamples, seed, level)
            note += (
                f" F1 and ROC-AUC - {reference}: "
                + comparison_note(reference, len(frames) - 1, n_resamples, seed, level)
                + " The ACER, APCER and BPCER rows of the same family are in the comparisons table."
            )
        note += (
            f" McNemar ({MCNEMAR_LABEL}): paired exact test of each model's errors against {reference} on the same test "
            "images, treating the images as independent; images of one subject share errors, so it rejects far too often "
            "(in simulation about 26% of runs for two equally good models at the 5% level). In brackets the discordant pairs "
            f"({reference} right and other wrong / {reference} wrong and other right)."
        )
    numbers, text = table2_classification(metrics, mcnemar, reference, comparisons)
    write_table(numbers, text, csv, md, "Table 2. Classification performance on the test split", note)


def write_table3(metric_paths: Mapping[str, str], bpcer_at_apcer: Sequence[float], csv, md):
    metrics = load_metrics(metric_paths)
    numbers, text = table3_antispoofing(metrics, bpcer_at_apcer)
    note = ci_note(metrics) + (
        " ACER = (pooled APCER + BPCER)/2 (the paper's); ACER_ISO = (APCER_PAIS + BPCER)/2 with "
        "APCER_PAIS the worst spoof type (ISO/IEC 30107-3). EER on the test scores, at the nearest ROC point (the "
        "observed threshold where |APCER - BPCER| is smallest, EER = their mean; not interpolated). HTER and the "
        "operating points use thresholds fixed on the validation split. BPCER@APCER=x: the highest threshold whose "
        "pooled APCER (all attacks together) on validation is at most x, and in brackets the pooled APCER it reaches on "
        "test; BPCER@APCER_PAIS=x: the same for the worst spoof type's APCER (ISO's APCER_PAIS), with the test "
        "APCER_PAIS reached in brackets. A reached value above x is the validation-to-test shift. Paired comparisons "
        "of ACER, APCER and BPCER with the reference are in the comparisons table."
    )
    write_table(numbers, text, csv, md, "Table 3. Anti-spoofing performance on the test split", note)


def write_apcer_per_type(metric_paths: Mapping[str, str], csv, md):
    metrics = load_metrics(metric_paths)
    numbers, text = apcer_per_type_table(metrics)
    write_table(
        numbers,
        text,
        csv,
        md,
        "APCER per spoof type (PAI species) on the test split",
        f"Threshold {DECISION_THRESHOLD:g} (P(spoof) >= {DECISION_THRESHOLD:g} is spoof); '-' = no test images of that type. "
        "n = test images of the type.",
    )


# ---------------------------------------------------------------------------
# Table 4: ONNX models on CPU (every engine and precision side by side)

TABLE4_ENGINES = ("torch_eager", "ort_fp32", "ort_int8", "openvino_fp32", "openvino_int8")
TABLE4_ENGINE_NAMES = {
    "torch_eager": "PyTorch eager",
    "ort_fp32": "ORT FP32",
    "ort_int8": "ORT INT8",
    "openvino_fp32": "OpenVINO FP32",
    "openvino_int8": "OpenVINO INT8",
}


def int8_recipe_text(report: Mapping | None) -> str:
    """'percentile, SiLU/SE gates in FP32' or 'FP32 fallback' for a quantization report."""
    if report is None:
        return "-"
    if report.get("fallback"):
        return "FP32 fallback (no INT8 recipe kept val ACER)"
    recipe = report["recipe"]
    kept = {"none": "all nodes INT8", "activation-gates": "SiLU/SE gates in FP32", "activation-gates+first-last": "gates, first conv, classifier in FP32"}
    return f"{recipe['calibration']}, {kept.get(recipe['exclusion'], recipe['exclusion'])}"


def table4_rows(
    names: Sequence[str],
    exports: Mapping[str, str | Path],
    latencies: Mapping[str, str | Path],
    int8: Mapping[str, str | Path] | None = None,
) -> list[dict]:
    """One row of raw numbers per (model, input size, threads); the deployment size (224 px) first.

    Engine columns `<engine>_{median,p95,mean}_ms` (batch 1) and `<engine>_images_per_s` (the
    throughput batch); model columns repeat on each of the model's rows.
    """
    rows = []
    for name in names:
        exp = read_json(exports[name])
        lat = read_json(latencies[name])
        q = read_json(int8[name]) if int8 and name in int8 else None
        model = {
            "model": name,
            "arch": exp.get("arch"),
            "trained_input_size": lat["trained_input_size"],
            "parameters_m": exp["onnx"]["parameters"] / 1e6,
            "onnx_size_mb": exp["onnx"]["size_mb"],
            "onnx_size_mib": exp["onnx"]["size_mib"],
            "opset": exp["onnx"]["opset"],
            "parity_max_abs_logit_diff": exp["parity"]["max_abs_logit_diff"],
            "parity_label_mismatches": exp["parity"]["label_mismatches"],
            "int8_size_mib": q["onnx"]["size_mib"] if q else None,
            "int8_fallback": q["fallback"] if q else None,
            "int8_recipe": int8_recipe_text(q),
        }
        if q:
            test = q["test"]
            model["fp32_test_acer"] = test["fp32"]["acer"]
            model["int8_test_acer"] = test["int8"]["acer"]
            model["openvino_int8_test_acer"] = test["openvino_int8"]["acer"] if "openvino_int8" in test else None
            model["fp32_test_acer_ci_lo"], model["fp32_test_acer_ci_hi"] = test.get("fp32_acer_interval", [None, None])
            model["int8_label_agreement"] = test["label_agreement"]
        for size in lat["input_sizes"]:
            for n in lat["threads"]:
                row = {**model, "input_size": size, "threads": n, "throughput_batch": lat["throughput_batch"]}
                for engine in TABLE4_ENGINES:
                    one = _latency_record(lat, engine, size, n, 1)
                    many = _latency_record(lat, engine, size, n, lat["throughput_batch"])
                    row[f"{engine}_median_ms"] = one["median_ms"] if one else None
                    row[f"{engine}_p95_ms"] = one["p95_ms"] if one else None
                    row[f"{engine}_mean_ms"] = one["mean_ms"] if one else None
                    row[f"{engine}_images_per_s"] = many["images_per_s"] if many else None
                ratio = next((r for r in lat["ratios"] if (r["input_size"], r["threads"], r["batch"]) == (size, n, 1)), {})
                row["torch_eager_over_ort_fp32"] = ratio.get("torch_eager_over_ort_fp32")
                row["fastest_int8"] = ratio.get("fastest_int8")
                row["ort_fp32_over_fastest_int8"] = ratio.get("ort_fp32_over_fastest_int8")
                row["cpu_model"] = lat["system"]["cpu_model"]
                row["onnxruntime"] = lat["system"]["onnxruntime"]
                row["openvino"] = lat["system"].get("openvino")
                rows.append(row)
    return rows


def _latency_record(lat: Mapping, engine: str, size: int, threads: int, batch: int) -> dict | None:
    for r in lat["records"]:
        if (r["engine"], r["input_size"], r["threads"], r["batch"]) == (engine, size, threads, batch):
            return r
    return None


def write_table4(rows: list[dict], csv_path, md_path) -> None:
    """results/tables/table4_onnx.csv (raw numbers) and .md: latency per engine, then the models."""
    numbers = pl.DataFrame(rows, infer_schema_length=None)
    engines = [e for e in TABLE4_ENGINES if any(r.get(f"{e}_median_ms") is not None for r in rows)]
    latency_rows, model_rows = [], {}
    for r in rows:
        text = {"Model": r["model"], "Input (px)": str(r["input_size"]), "Threads": str(r["threads"])}
        for e in engines:
            text[f"{TABLE4_ENGINE_NAMES[e]} median / p95 ms"] = f"{fmt(r[f'{e}_median_ms'], 2)} / {fmt(r[f'{e}_p95_ms'], 2)}"
        text["Eager / ORT FP32"] = fmt(r["torch_eager_over_ort_fp32"], 2)
        fastest = r.get("fastest_int8")
        text["ORT FP32 / fastest INT8"] = (
            f"{fmt(r['ort_fp32_over_fastest_int8'], 2)} ({TABLE4_ENGINE_NAMES[fastest]})" if fastest else "-"
        )
        text[f"Batch-{r['throughput_batch']} images/s (ORT FP32 / fastest INT8)"] = (
            f"{fmt(r['ort_fp32_images_per_s'], 0)} / {fmt(r[f'{fastest}_images_per_s'], 0)}" if fastest else fmt(r["ort_fp32_images_per_s"], 0)
        )
        latency_rows.append(text)
        if r["model"] not in model_rows:
            fallback = r.get("int8_fallback")
            model_rows[r["model"]] = {
                "Model": r["model"] + (" (INT8 = FP32 fallback)" if fallback else ""),
                "Parameters (M)": fmt(r["parameters_m"], 2),
                "ONNX size (MB)": fmt(r["onnx_size_mb"], 2),
                "ONNX size (MiB)": fmt(r["onnx_size_mib"], 2),
                "INT8 size (MiB)": fmt(r["int8_size_mib"], 2),
                "INT8 recipe (chosen on validation)": r["int8_recipe"],
                "Test ACER FP32 [95% CI]": fmt_ci(r.get("fp32_test_acer"), r.get("fp32_test_acer_ci_lo"), r.get("fp32_test_acer_ci_hi")),
                "Test ACER INT8 ORT / OpenVINO": f"{fmt(r.get('int8_test_acer'))} / {fmt(r.get('openvino_int8_test_acer'))}",
                "Max abs logit diff (ONNX vs PyTorch)": f"{r['parity_max_abs_logit_diff']:.1e}",
            }
    first = rows[0] if rows else {}
    note = (
        f"CPU: {first.get('cpu_model', '?')}; ONNX Runtime {first.get('onnxruntime', '?')}, OpenVINO {first.get('openvino') or '-'}. "
        "Latency at batch 1 after warm-up; engines of one row were timed interleaved in alternating blocks, so they saw the "
        "same background load: compare within a row. The networks are fully convolutional and are timed at the paper's "
        "224 px and at their trained size. ORT and OpenVINO INT8 run the same QDQ INT8 file. MB = 10^6 bytes, MiB = 2^20 "
        "bytes (the paper's 8.46 is MiB). ACER = (pooled APCER + BPCER) / 2 at threshold 0.5 on the test split; the INT8 "
        "recipe (calibration method, nodes kept in FP32) was chosen on the validation split."
    )
    parts = [
        "# Table 4: ONNX models on CPU\n\n",
        to_markdown(pl.DataFrame(latency_rows, infer_schema_length=None)),
        "\n",
        to_markdown(pl.DataFrame(list(model_rows.values()), infer_schema_length=None)),
        f"\n{note}\n",
    ]
    with atomic_path(csv_path) as tmp:
        numbers.write_csv(tmp, float_precision=6)
    write_text(md_path, "".join(parts))
