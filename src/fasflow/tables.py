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


def table2_classification(
    metrics: dict[str, dict], mcnemar: Mapping[str, dict] | None = None, reference: str = "S0"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Accuracy, precision, recall, F1, ROC-AUC with CIs, and McNemar p against `reference`."""
    numbers, text = _metric_table(metrics, TABLE2_COLUMNS)
    if mcnemar is not None:
        column = f"McNemar p (vs {reference})"
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


def table3_antispoofing(
    metrics: dict[str, dict], bpcer_at_apcer: Sequence[float] = (0.01, 0.05, 0.10)
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """APCER, BPCER, ACER (paper, pooled) and APCER_PAIS, ACER_ISO, EER, HTER, BPCER at fixed APCER."""
    numbers, text = _metric_table(metrics, TABLE3_COLUMNS)
    for (name, m), num, txt in zip(metrics.items(), numbers, text):
        fixed = m.get("bpcer_at_apcer") or {}
        for target in bpcer_at_apcer:
            column = f"BPCER@APCER={format_rate(target)}"
            value = (fixed.get(format_rate(target)) or {}).get("bpcer")
            num[column] = value
            txt[column] = fmt(value)
    return _frame(numbers), _frame(text)


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


def write_table2(metric_paths: Mapping[str, str], prediction_paths: Mapping[str, str], reference: str, csv, md):
    from .metrics import paired_mcnemar, read_predictions

    metrics = load_metrics(metric_paths)
    mcnemar = None
    if reference in prediction_paths:
        ref = read_predictions(prediction_paths[reference])
        mcnemar = {
            name: paired_mcnemar(ref, read_predictions(path), names=(reference, name))
            for name, path in prediction_paths.items()
            if name != reference
        }
    numbers, text = table2_classification(metrics, mcnemar, reference)
    note = ci_note(metrics)
    if mcnemar is not None:
        note += (
            f" McNemar: paired exact test of each model's errors against {reference} on the same "
            f"test images; in brackets the discordant pairs ({reference} right and other wrong / "
            f"{reference} wrong and other right)."
        )
    write_table(numbers, text, csv, md, "Table 2. Classification performance on the test split", note)


def write_table3(metric_paths: Mapping[str, str], bpcer_at_apcer: Sequence[float], csv, md):
    metrics = load_metrics(metric_paths)
    numbers, text = table3_antispoofing(metrics, bpcer_at_apcer)
    note = ci_note(metrics) + (
        " ACER = (pooled APCER + BPCER)/2 (the paper's); ACER_ISO = (APCER_PAIS + BPCER)/2 with "
        "APCER_PAIS the worst spoof type (ISO/IEC 30107-3). EER on test scores; HTER and "
        "BPCER@APCER use thresholds fixed on the validation split."
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
