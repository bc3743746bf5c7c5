"""The student zoo: other timm architectures trained with the paper's student recipe, next to MobileNetV2.

The paper fixes one student, MobileNetV2. The config key `students` maps a model name to a timm
architecture; each is trained with the hyperparameters of scenario `zoo.recipe` (S0: the
baseline, never tuned) and, when `zoo.distilled_recipe` names a distilled scenario (S2), also
distilled from the same teacher as `<name>_<scenario>`. Zoo models live in the main layout
(results/models/<name>/, predictions, metrics, onnx, latency), so the main rules score, export,
quantise and time them; the recipe's own MobileNetV2 model (results/models/S0/) is the
reference row of the zoo table, which puts accuracy and ACER (with their intervals) next to
parameters, ONNX size and batch-1 CPU latency, FP32 and INT8, and marks the Pareto front of
ACER against latency. Which models the zoo has and what each one's training depends on is
configuration (fasflow.config.zoo_models, zoo_run_settings, check_zoo: read when the workflow
is parsed).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import polars as pl

from . import DECISION_THRESHOLD, io
from .errors import DataError


# ---------------------------------------------------------------------------
# the table


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """True for each (cost, error) point that no other point beats in both (<= in both, < in one).

    Points with a NaN coordinate are never on the front.
    """
    flags = []
    for i, (x, y) in enumerate(points):
        if math.isnan(x) or math.isnan(y):
            flags.append(False)
            continue
        dominated = any(
            j != i and not (math.isnan(a) or math.isnan(b)) and a <= x and b <= y and (a < x or b < y) for j, (a, b) in enumerate(points)
        )
        flags.append(not dominated)
    return flags


def _value(value) -> float:
    return math.nan if value is None else float(value)


def zoo_rows(models: Sequence[str], info: Mapping[str, Mapping], metrics: Mapping[str, Mapping], table4: Sequence[Mapping]) -> list[dict]:
    """One row of raw numbers per model: test metrics at DECISION_THRESHOLD, size and latency, Pareto flags.

    `table4` holds the models' rows of fasflow.tables.table4_rows (one per input size and thread
    count, the deployment size first): the zoo reads size, INT8 recipe and ONNX Runtime latency
    at batch 1 and one thread from the deployment-size row, as Table 4 reports them.
    """
    rows = []
    for name in models:
        m = metrics[name]
        own = [r for r in table4 if r["model"] == name]
        if not own:
            raise DataError(f"zoo: no export and latency reports of {name}")
        size = own[0]["input_size"]
        t4 = next((r for r in own if r["input_size"] == size and r["threads"] == 1), own[0])
        intervals = (m.get("ci") or {}).get("intervals") or {}
        row = {
            "model": name,
            "arch": info[name]["arch"],
            "recipe": info[name]["recipe"],
            "reference": bool(info[name].get("reference", False)),
            "parameters_m": t4["parameters_m"],
            "onnx_size_mib": t4["onnx_size_mib"],
            "int8_size_mib": t4["int8_size_mib"],
            "int8_recipe": t4["int8_recipe"],
            "int8_fallback": t4["int8_fallback"],
        }
        for metric in ("accuracy", "f1", "roc_auc", "apcer", "bpcer", "acer"):
            lo, hi = intervals.get(metric) or (None, None)
            row[metric], row[f"{metric}_ci_lo"], row[f"{metric}_ci_hi"] = _value(m.get(metric)), _value(lo), _value(hi)
        row["int8_acer"] = _value(t4.get("int8_test_acer"))
        row["int8_label_agreement"] = _value(t4.get("int8_label_agreement"))
        row["latency_input_size"] = int(size)
        row["latency_threads"] = int(t4["threads"])
        row["fp32_median_ms"] = _value(t4.get("ort_fp32_median_ms"))
        row["int8_median_ms"] = _value(t4.get("ort_int8_median_ms"))
        row["trained_input_size"] = int(t4["trained_input_size"])
        row["cpu_model"] = t4["cpu_model"]
        row["onnxruntime"] = t4["onnxruntime"]
        rows.append(row)
    for key, error, cost in (("pareto_fp32", "acer", "fp32_median_ms"), ("pareto_int8", "int8_acer", "int8_median_ms")):
        for row, flag in zip(rows, pareto_front([(r[cost], r[error]) for r in rows])):
            row[key] = flag
    return rows


def zoo_text(rows: Sequence[Mapping]) -> pl.DataFrame:
    """The Markdown view of zoo_rows."""
    from .tables import fmt, fmt_ci

    def ci(row, metric):
        lo, hi = row[f"{metric}_ci_lo"], row[f"{metric}_ci_hi"]
        return fmt_ci(row[metric], None if math.isnan(lo) else lo, None if math.isnan(hi) else hi)

    text = []
    for r in rows:
        text.append(
            {
                "Model": r["model"] + (" (reference)" if r["reference"] else ""),
                "Architecture": r["arch"],
                "Recipe": r["recipe"],
                "Params (M)": fmt(r["parameters_m"], 2),
                "ONNX MiB (FP32 / INT8)": f"{fmt(r['onnx_size_mib'], 2)} / {fmt(r['int8_size_mib'], 2)}",
                "Accuracy": ci(r, "accuracy"),
                "ACER": ci(r, "acer"),
                "ROC-AUC": ci(r, "roc_auc"),
                "INT8 ACER": fmt(r["int8_acer"]) + (" (FP32 fallback)" if r["int8_fallback"] else ""),
                f"ORT FP32 / INT8 ms ({r['latency_input_size']} px, 1 thread)": f"{fmt(r['fp32_median_ms'], 2)} / {fmt(r['int8_median_ms'], 2)}",
                "Pareto (FP32 / INT8)": f"{'yes' if r['pareto_fp32'] else 'no'} / {'yes' if r['pareto_int8'] else 'no'}",
            }
        )
    return pl.DataFrame(text)


def write_zoo(
    models: Sequence[str],
    info: Mapping[str, Mapping],
    metric_paths: Mapping[str, str],
    export_paths: Mapping[str, str],
    latency_paths: Mapping[str, str],
    int8_paths: Mapping[str, str] | None,
    csv,
    md,
    figure_paths: Sequence = (),
) -> pl.DataFrame:
    """Zoo table (CSV, Markdown) and the ACER-against-latency figure from the models' reports."""
    from .tables import table4_rows, write_table

    missing = [p for paths in (metric_paths, export_paths, latency_paths, int8_paths or {}) for p in paths.values() if not _exists(p)]
    if missing:
        raise DataError(f"{missing[0]}: report not found")
    metrics = {name: io.read_json(path) for name, path in metric_paths.items()}
    rows = zoo_rows(models, info, metrics, table4_rows(models, export_paths, latency_paths, int8_paths))
    ci = metrics[models[0]].get("ci") or {}
    intervals = f"{ci['level']:.0%} subject-level bootstrap intervals ({ci['n_resamples']} resamples)" if ci else "no intervals (evaluate.bootstrap_n 0)"
    numbers = pl.DataFrame(rows, infer_schema_length=None)
    reference = [r["model"] for r in rows if r["reference"]]
    first = rows[0]
    note = (
        f"Every model trained with the hyperparameters of its recipe scenario on the same split and seed; the reference "
        f"row{'s' if len(reference) > 1 else ''} ({', '.join(reference)}) {'are' if len(reference) > 1 else 'is'} the study's own "
        f"MobileNetV2 model. Test split, threshold {DECISION_THRESHOLD:g}, ACER = (pooled APCER + BPCER) / 2, {intervals}. "
        f"Latency: ONNX Runtime {first['onnxruntime']}, batch 1, 1 thread, median, input {first['latency_input_size']} px (the deployment size of Table 4; trained at {first['trained_input_size']} px), "
        f"CPU {first['cpu_model']}; every engine, size and thread count is in results/latency/<model>.json. INT8 = static QDQ with "
        "the recipe chosen on validation faces, as in Table 4 (its ACER on the test split, no interval; an FP32 fallback is "
        "marked). Pareto: no other model is both faster and at most as wrong (FP32 and INT8 fronts separately). Latency on a shared machine is noisy: compare within one run."
    )
    write_table(numbers, zoo_text(rows), csv, md, title="Student zoo: accuracy against size and CPU latency", note=note)
    if figure_paths:
        zoo_figure(rows, figure_paths)
    return numbers


def _exists(path) -> bool:
    from pathlib import Path

    return Path(path).is_file()


def zoo_figure(rows: Sequence[Mapping], paths: Sequence) -> None:
    """ACER (with its interval) against FP32 latency, INT8 as hollow markers; the FP32 Pareto front as a line."""
    from .figures import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    for i, r in enumerate(rows):
        colour = f"C{i % 10}"
        lo, hi = r["acer_ci_lo"], r["acer_ci_hi"]
        yerr = [[max(r["acer"] - lo, 0.0)], [max(hi - r["acer"], 0.0)]] if not (math.isnan(lo) or math.isnan(hi)) else None
        ax.errorbar(r["fp32_median_ms"], r["acer"], yerr=yerr, fmt="o", color=colour, capsize=3, label=r["model"] if r["arch"] in r["model"] else f"{r['model']} ({r['arch']})")
        if not math.isnan(r["int8_median_ms"]):
            ax.plot(r["int8_median_ms"], r["int8_acer"], "o", mfc="none", color=colour)
    front = sorted((r["fp32_median_ms"], r["acer"]) for r in rows if r["pareto_fp32"])
    if front:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", linewidth=1, linestyle="--", label="Pareto front (FP32)")
    ax.set_xlabel(f"ONNX Runtime latency at {rows[0]['latency_input_size']} px, batch 1, 1 thread (ms, median)")
    ax.set_ylabel(f"test ACER at threshold {DECISION_THRESHOLD:g}")
    ax.set_title("Student zoo: ACER against CPU latency (filled FP32, hollow INT8)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    save_figure(fig, paths)
