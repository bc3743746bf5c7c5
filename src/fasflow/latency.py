"""CPU latency at batch 1: ONNX Runtime fp32 and INT8 next to PyTorch eager, and Table 4.

Every figure is measured in one process, one engine at a time, with the thread count pinned
and recorded: on a shared machine a neighbouring job changes latency several-fold, which is
why the workflow's latency rule takes all cores.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import polars as pl
import torch

from .io import read_json

PERCENTILES = (90, 95)


def cpu_model() -> str:
    """The processor's marketing name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cores() -> int:
    """Cores this process may run on (affinity, so a cgroup/SLURM allocation is respected)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def system_info() -> dict:
    import onnx
    import onnxruntime

    return {
        "cpu_model": cpu_model(),
        "logical_cores_available": available_cores(),
        "logical_cores_total": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "torch": torch.__version__,
    }


def time_calls(fn: Callable[[], object], warmup: int, runs: int) -> np.ndarray:
    """Milliseconds of `runs` calls of `fn` after `warmup` untimed calls."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    for _ in range(warmup):
        fn()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter_ns()
        fn()
        times[i] = (time.perf_counter_ns() - start) / 1e6
    return times


def summarize(ms: np.ndarray) -> dict:
    return {
        "runs": int(len(ms)),
        "mean_ms": float(ms.mean()),
        "median_ms": float(np.median(ms)),
        **{f"p{p}_ms": float(np.percentile(ms, p)) for p in PERCENTILES},
        "min_ms": float(ms.min()),
        "std_ms": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
    }


def example_input(input_size: int, seed: int = 0) -> np.ndarray:
    """A fixed batch-1 input: latency of these networks does not depend on pixel values."""
    return np.random.default_rng(seed).standard_normal((1, 3, input_size, input_size)).astype(np.float32)


def onnx_latency(path: str | Path, input_size: int, threads: int, warmup: int, runs: int) -> dict:
    from .export import open_session

    session = open_session(path, threads=threads)
    feed = {session.get_inputs()[0].name: example_input(input_size)}
    return summarize(time_calls(lambda: session.run(None, feed), warmup, runs))


def torch_latency(model: torch.nn.Module, input_size: int, threads: int, warmup: int, runs: int) -> dict:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = model.eval()
        x = torch.from_numpy(example_input(input_size))
        with torch.inference_mode():
            return summarize(time_calls(lambda: model(x), warmup, runs))
    finally:
        torch.set_num_threads(previous)


def thread_settings(all_cores: int) -> list[int]:
    """1 thread and all cores given to the job (just [1] on a single core)."""
    return sorted({1, max(1, int(all_cores))})


def measure(
    fp32_path: str | Path,
    model: torch.nn.Module,
    input_size: int,
    threads: Sequence[int],
    warmup: int,
    runs: int,
    int8_path: str | Path | None = None,
) -> dict:
    """Latency of every engine at every thread count, with the facts needed to compare runs."""
    results = {}
    for n in threads:
        engines = {"onnx_fp32": onnx_latency(fp32_path, input_size, n, warmup, runs)}
        if int8_path is not None:
            engines["onnx_int8"] = onnx_latency(int8_path, input_size, n, warmup, runs)
        engines["torch_eager"] = torch_latency(model, input_size, n, warmup, runs)
        engines["ratios"] = {
            "torch_eager_over_onnx_fp32_median": engines["torch_eager"]["median_ms"] / engines["onnx_fp32"]["median_ms"],
        }
        if int8_path is not None:
            engines["ratios"]["onnx_fp32_over_int8_median"] = (
                engines["onnx_fp32"]["median_ms"] / engines["onnx_int8"]["median_ms"]
            )
        results[str(n)] = engines
    return {
        "batch_size": 1,
        "input_size": int(input_size),
        "warmup": int(warmup),
        "runs": int(runs),
        "threads": [int(n) for n in threads],
        "system": system_info(),
        "results": results,
    }


# ---------------------------------------------------------------------------
# Table 4


def table4_rows(
    names: Sequence[str],
    exports: Mapping[str, str | Path],
    latencies: Mapping[str, str | Path],
    int8: Mapping[str, str | Path] | None = None,
) -> list[dict]:
    """One row of raw numbers per model; latency at 1 thread and at all cores of the run."""
    rows = []
    for name in names:
        exp = read_json(exports[name])
        lat = read_json(latencies[name])
        q = read_json(int8[name]) if int8 and name in int8 else None
        threads = lat["threads"]
        row = {
            "model": name,
            "arch": exp.get("arch"),
            "parameters_m": exp["onnx"]["parameters"] / 1e6,
            "onnx_size_mb": exp["onnx"]["size_mb"],
            "onnx_size_mib": exp["onnx"]["size_mib"],
            "opset": exp["onnx"]["opset"],
            "parity_max_abs_logit_diff": exp["parity"]["max_abs_logit_diff"],
            "parity_label_mismatches": exp["parity"]["label_mismatches"],
            "int8_size_mib": q["onnx"]["size_mib"] if q else None,
        }
        for n in threads:
            res = lat["results"][str(n)]
            suffix = "1t" if n == 1 else f"{n}t"
            row[f"fp32_mean_ms_{suffix}"] = res["onnx_fp32"]["mean_ms"]
            row[f"fp32_median_ms_{suffix}"] = res["onnx_fp32"]["median_ms"]
            row[f"fp32_p95_ms_{suffix}"] = res["onnx_fp32"]["p95_ms"]
            row[f"int8_mean_ms_{suffix}"] = res["onnx_int8"]["mean_ms"] if "onnx_int8" in res else None
            row[f"int8_median_ms_{suffix}"] = res["onnx_int8"]["median_ms"] if "onnx_int8" in res else None
            row[f"torch_eager_mean_ms_{suffix}"] = res["torch_eager"]["mean_ms"]
            row[f"torch_eager_median_ms_{suffix}"] = res["torch_eager"]["median_ms"]
        if q:
            row["fp32_test_acer"] = q["test"]["fp32"]["acer"]
            row["int8_test_acer"] = q["test"]["int8"]["acer"]
            row["int8_test_apcer"] = q["test"]["int8"]["apcer"]
            row["int8_test_bpcer"] = q["test"]["int8"]["bpcer"]
            row["int8_label_agreement"] = q["test"]["label_agreement"]
        row["cpu_model"] = lat["system"]["cpu_model"]
        row["onnxruntime"] = lat["system"]["onnxruntime"]
        rows.append(row)
    return rows


def write_table4(rows: list[dict], csv_path, md_path) -> None:
    """results/tables/table4_onnx.csv (raw numbers) and .md (the paper's columns, readable)."""
    from .tables import fmt, write_table

    numbers = pl.DataFrame(rows, infer_schema_length=None)
    text_rows = []
    for r in rows:
        cores = [k.removeprefix("fp32_mean_ms_") for k in r if k.startswith("fp32_mean_ms_")]
        many = next((c for c in cores if c != "1t"), "1t")
        text = {
            "Model": r["model"],
            "Parameters (M)": fmt(r["parameters_m"], 2),
            "ONNX size (MB)": fmt(r["onnx_size_mb"], 2),
            "ONNX size (MiB)": fmt(r["onnx_size_mib"], 2),
        }
        for c in dict.fromkeys(["1t", many]):
            label = "1 thread" if c == "1t" else f"{c[:-1]} threads"
            text[f"FP32 mean / median ms ({label})"] = f"{fmt(r[f'fp32_mean_ms_{c}'], 2)} / {fmt(r[f'fp32_median_ms_{c}'], 2)}"
            int8_mean, int8_median = r.get(f"int8_mean_ms_{c}"), r.get(f"int8_median_ms_{c}")
            text[f"INT8 mean / median ms ({label})"] = (
                f"{fmt(int8_mean, 2)} / {fmt(int8_median, 2)}" if int8_mean is not None else "-"
            )
            text[f"PyTorch eager mean ms ({label})"] = fmt(r[f"torch_eager_mean_ms_{c}"], 2)
        text["Max abs logit diff"] = f"{r['parity_max_abs_logit_diff']:.1e}"
        if "int8_test_acer" in r:
            text["Test ACER FP32 / INT8"] = f"{fmt(r['fp32_test_acer'])} / {fmt(r['int8_test_acer'])}"
        text_rows.append(text)
    text = pl.DataFrame(text_rows, infer_schema_length=None)
    first = rows[0] if rows else {}
    note = (
        f"CPU: {first.get('cpu_model', '?')}; ONNX Runtime {first.get('onnxruntime', '?')}; batch 1; "
        "latency after warm-up over the configured number of timed runs. MB = 10^6 bytes, MiB = 2^20 bytes "
        "(the paper's 8.46 is MiB). ACER = (pooled APCER + BPCER) / 2 at threshold 0.5 on the test split."
    )
    write_table(numbers, text, csv_path, md_path, title="Table 4: ONNX models on CPU", note=note)


def measure_trained(
    weights: str | Path,
    summary_path: str | Path,
    onnx_path: str | Path,
    out_path: str | Path,
    threads: int,
    warmup: int,
    runs: int,
    int8_path: str | Path | None = None,
) -> dict:
    """The latency rule: measure at 1 thread and at all cores given, write the JSON report."""
    from .io import write_json
    from .models import load_trained
    from .runlog import get_logger

    model, summary = load_trained(weights, summary_path)
    cores = min(int(threads), available_cores())
    result = measure(onnx_path, model, int(summary["input_size"]), thread_settings(cores), warmup, runs, int8_path)
    result.update({"weights": str(weights), "onnx": str(onnx_path), "int8": str(int8_path) if int8_path else None})
    get_logger().info("latency of %s: %s", onnx_path, result["results"])
    write_json(out_path, result)
    return result
