"""The paper's figures and a few more, from metrics JSON, predictions and training histories.

Each function draws one figure and writes it to every path given (PNG and PDF/SVG, the
format taken from the extension), atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from .errors import DataError  # noqa: E402
from .io import atomic_path  # noqa: E402
from .metrics import DECISION_THRESHOLD  # noqa: E402
from .tables import SPOOF_TYPE_NAMES  # noqa: E402

plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "font.size": 10, "svg.hashsalt": "fasflow"})
# Reproducible PDFs/SVGs: no creation dates in the files.
_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {}}


def save_figure(fig, paths: Sequence[str | Path]) -> None:
    for path in paths:
        path = Path(path)
        fmt = path.suffix.lstrip(".").lower()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight", metadata=_METADATA.get(fmt, {}))
    plt.close(fig)


def _interval_errors(metrics: dict, key: str, value: float) -> tuple[float, float]:
    lo, hi = ((metrics.get("ci") or {}).get("intervals") or {}).get(key) or (None, None)
    if lo is None or hi is None or value is None:
        return 0.0, 0.0
    return max(value - lo, 0.0), max(hi - value, 0.0)


def _nan(value) -> float:
    return math.nan if value is None else float(value)


def confusion_matrices(metrics: Mapping[str, dict], paths: Sequence[str | Path]) -> None:
    """Figure 1: the test confusion matrix of each model (counts and row shares) at DECISION_THRESHOLD."""
    names = list(metrics)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.3), squeeze=False)
    for ax, name in zip(axes[0], names):
        matrix = np.array(metrics[name]["confusion_matrix"]["matrix"], dtype=float)
        rows = matrix.sum(axis=1, keepdims=True)
        share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(
                    j, i, f"{int(matrix[i, j])}\n({share[i, j]:.2%})", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=9,
                )
        ax.set_xticks([0, 1], ["live", "spoof"])
        ax.set_yticks([0, 1], ["live", "spoof"])
        ax.set_xlabel("Predicted")
        ax.set_ylabel("True")
        ax.set_title(name)
    fig.suptitle(f"Confusion matrices on the test split (threshold {DECISION_THRESHOLD:g}: P(spoof) >= {DECISION_THRESHOLD:g} is spoof)")
    fig.tight_layout()
    save_figure(fig, paths)


def comparison_bars(metrics: Mapping[str, dict], paths: Sequence[str | Path]) -> None:
    """Figure 2: F1 and APCER/BPCER/ACER per model with bootstrap CI error bars."""
    names = list(metrics)
    x = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(names) + 4), 3.8))
    f1 = [_nan(metrics[n].get("f1")) for n in names]
    err = np.array([_interval_errors(metrics[n], "f1", metrics[n].get("f1")) for n in names]).T
    ax1.bar(x, f1, yerr=err, capsize=4, color="tab:blue")
    finite = [v - e for v, e in zip(f1, err[0]) if not math.isnan(v)]
    ax1.set_ylim(max(0.0, min(finite, default=0.0) - 0.02), 1.0)
    ax1.set_xticks(x, names)
    ax1.set_ylabel("F1-score (spoof positive)")
    ax1.set_title(f"F1 on the test split (threshold {DECISION_THRESHOLD:g})")
    width = 0.27
    for k, (key, label) in enumerate([("apcer", "APCER"), ("bpcer", "BPCER"), ("acer", "ACER")]):
        values = [_nan(metrics[n].get(key)) for n in names]
        e = np.array([_interval_errors(metrics[n], key, metrics[n].get(key)) for n in names]).T
        ax2.bar(x + (k - 1) * width, values, width, yerr=e, capsize=3, label=label)
    ax2.set_xticks(x, names)
    ax2.set_ylabel("Error rate")
    ax2.set_title(f"APCER / BPCER / ACER on the test split (threshold {DECISION_THRESHOLD:g})")
    ax2.legend(frameon=False)
    level = next((m["ci"]["level"] for m in metrics.values() if m.get("ci")), None)
    if level:
        fig.text(0.5, -0.02, f"Error bars: {level:.0%} subject-level bootstrap intervals", ha="center", fontsize=8)
    fig.tight_layout()
    save_figure(fig, paths)


def _check_pred(df: pl.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not {"label", "score"} <= set(df.columns):
        raise DataError(f"predictions of {name}: need columns label and score")
    return df["label"].to_numpy(), df["score"].to_numpy().astype(float)


def roc_curves(predictions: Mapping[str, pl.DataFrame], paths: Sequence[str | Path]) -> None:
    """ROC curves (spoof positive: true-positive rate = 1 - APCER vs BPCER) with AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    for name, df in predictions.items():
        y, s = _check_pred(df, name)
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.4f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("BPCER (live rejected)")
    ax.set_ylabel("1 - APCER (spoof detected)")
    ax.set_title("ROC on the test split")
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, paths)


def det_curves(predictions: Mapping[str, pl.DataFrame], paths: Sequence[str | Path]) -> None:
    """DET curves: APCER vs BPCER on normal-deviate axes (ISO/IEC 19795 style)."""
    from scipy.stats import norm
    from sklearn.metrics import det_curve

    ticks = np.array([0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    eps = 1e-4
    for name, df in predictions.items():
        y, s = _check_pred(df, name)
        if len(np.unique(y)) < 2:
            continue
        bpcer, apcer, _ = det_curve(y, s)
        ax.plot(norm.ppf(np.clip(bpcer, eps, 1 - eps)), norm.ppf(np.clip(apcer, eps, 1 - eps)), label=name)
    lim = norm.ppf([eps, 0.5])
    ax.plot(lim, lim, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks], rotation=45)
    ax.set_yticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks])
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_xlabel("BPCER (live rejected)")
    ax.set_ylabel("APCER (spoof accepted)")
    ax.set_title("DET on the test split")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, paths)


HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_f1", "val_apcer", "val_bpcer", "val_acer")


def training_curves(history: pl.DataFrame, name: str, paths: Sequence[str | Path], best_epoch: int | None = None) -> None:
    """Losses, validation F1 and validation APCER/BPCER/ACER per epoch of one model."""
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise DataError(f"history of {name}: missing column(s) {missing}")
    epoch = history["epoch"].to_numpy()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    axes[0].plot(epoch, history["train_loss"], marker="o", label="train")
    axes[0].plot(epoch, history["val_loss"], marker="o", label="validation")
    axes[0].set_ylabel("Loss")
    axes[0].legend(frameon=False)
    axes[1].plot(epoch, history["val_f1"], marker="o", color="tab:green")
    axes[1].set_ylabel("Validation F1")
    for key in ("val_apcer", "val_bpcer", "val_acer"):
        axes[2].plot(epoch, history[key], marker="o", label=key.removeprefix("val_").upper())
    axes[2].set_ylabel("Validation error rate")
    axes[2].legend(frameon=False)
    for ax in axes:
        ax.set_xlabel("Epoch")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
    fig.suptitle(f"Training of {name}" + (f" (dashed: best epoch {best_epoch})" if best_epoch is not None else ""))
    fig.tight_layout()
    save_figure(fig, paths)


def apcer_heatmap(metrics: Mapping[str, dict], paths: Sequence[str | Path]) -> None:
    """APCER per spoof type (PAI species) and model; grey = no test images of that type."""
    names = list(metrics)
    values = np.array(
        [[_nan((metrics[n].get("apcer_per_type") or {}).get(t)) for t in SPOOF_TYPE_NAMES] for n in names]
    )
    fig, ax = plt.subplots(figsize=(1.0 * len(SPOOF_TYPE_NAMES) + 2, 0.6 * len(names) + 1.8))
    cmap = plt.get_cmap("Reds").with_extremes(bad="lightgrey")
    vmax = max(np.nanmax(values) if np.isfinite(values).any() else 0.0, 0.01)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
    for i in range(len(names)):
        for j in range(len(SPOOF_TYPE_NAMES)):
            v = values[i, j]
            ax.text(j, i, "n/a" if math.isnan(v) else f"{v:.3f}", ha="center", va="center", fontsize=8,
                    color="white" if not math.isnan(v) and v > 0.6 * vmax else "black")
    ax.set_xticks(range(len(SPOOF_TYPE_NAMES)), SPOOF_TYPE_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("Spoof type (PAI species)")
    ax.set_ylabel("Model")
    ax.set_title(f"APCER per spoof type on the test split (threshold {DECISION_THRESHOLD:g})")
    fig.colorbar(image, ax=ax, label="APCER")
    fig.tight_layout()
    save_figure(fig, paths)


# ---------------------------------------------------------------------------
# training curves from the files training writes


def write_training_curves(history_path, summary_path, name: str, paths: Sequence[str | Path]) -> None:
    from .io import read_json

    try:
        history = pl.read_csv(history_path)
    except Exception as exc:  # polars raises several types for unreadable CSV
        raise DataError(f"{history_path}: not a readable CSV ({exc})") from exc
    if history.height == 0:
        raise DataError(f"{history_path}: no epochs recorded")
    best = read_json(summary_path).get("best_epoch") if summary_path else None
    training_curves(history, name, paths, best)
