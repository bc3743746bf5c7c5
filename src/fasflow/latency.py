"""CPU latency of every engine and precision side by side: PyTorch eager, ONNX Runtime and OpenVINO.

The networks are fully convolutional, so they are timed at the paper's deployment size (224 px)
as well as at the size they were trained at; the ONNX files are given that input size by
rewriting their input shape (`with_input_size`), and a parity check confirms that the resized
graph still computes what PyTorch computes at that size.

On a shared machine a neighbouring job changes latency several-fold within seconds, so engines
are never timed one after the other: `time_interleaved` runs them in alternating short blocks
in one process, and every figure of one setting (size, threads, batch) comes from the same
stretch of time. Ratios of medians are what compares engines; absolute milliseconds are only
as quiet as the machine was.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from .errors import ConfigError, DataError

PERCENTILES = (90, 95)
DEPLOYMENT_SIZE = 224  # the paper's input size: Table 4 always reports it
ENGINES = ("torch", "onnxruntime", "openvino")
# Engine and precision as they appear in reports and Table 4, in display order.
ENGINE_LABELS = {
    "torch_eager": "PyTorch eager FP32",
    "ort_fp32": "ONNX Runtime FP32",
    "ort_int8": "ONNX Runtime INT8",
    "openvino_fp32": "OpenVINO FP32",
    "openvino_int8": "OpenVINO INT8",
}
BLOCK = 5  # timed runs per engine before switching to the next one
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


# ---------------------------------------------------------------------------
# The machine


def cpu_model() -> str:
    """The processor's marketing name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> dict[str, bool]:
    """The instruction-set extensions INT8 speed depends on (VNNI: 8-bit dot products without saturation)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    present = set(line.split(":", 1)[-1].split())
    return {flag: flag in present for flag in CPU_FLAGS}


def available_cores() -> int:
    """Cores this process may run on (affinity, so a cgroup/SLURM allocation is respected)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__


def system_info() -> dict:
    import onnx
    import onnxruntime

    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores_available": available_cores(),
        "logical_cores_total": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino_version(),
        "onnx": onnx.__version__,
        "torch": torch.__version__,
    }


def thread_settings(all_cores: int) -> list[int]:
    """1 thread, 2 threads and all cores given to the job, without repeats and never above all cores."""
    all_cores = max(1, int(all_cores))
    return sorted({n for n in (1, 2, all_cores) if n <= all_cores})


def latency_sizes(trained_size: int, sizes: Sequence[int]) -> list[int]:
    """The deployment sizes first (224 px: the paper's), then the trained size when it differs."""
    out = [int(s) for s in dict.fromkeys(sizes)]
    if any(s < 1 for s in out):
        raise ConfigError(f"export.latency.input_sizes must be positive, got {list(sizes)}")
    if int(trained_size) not in out:
        out.append(int(trained_size))
    return out


# ---------------------------------------------------------------------------
# Timing


def summarize(ms: np.ndarray) -> dict:
    return {
        "runs": int(len(ms)),
        "mean_ms": float(ms.mean()),
        "median_ms": float(np.median(ms)),
        **{f"p{p}_ms": float(np.percentile(ms, p)) for p in PERCENTILES},
        "min_ms": float(ms.min()),
        "std_ms": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
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


@dataclass
class Runner:
    """One engine ready to run one fixed input; `prepare` runs before each of its blocks."""

    name: str
    run: Callable[[], object]
    prepare: Callable[[], None] | None = None


def time_interleaved(runners: Sequence[Runner], warmup: int, runs: int, block: int = BLOCK, pause_s: float = 0.005) -> dict[str, np.ndarray]:
    """Milliseconds of `runs` calls of every runner, timed in alternating blocks of `block` calls.

    Interleaving puts every engine under the same background load: on a shared machine,
    timing engine A for ten seconds and then engine B compares two different machines. Before
    each block, a short pause lets the previous engine's worker threads stop spinning and one
    untimed call brings the engine's caches and thread pool back.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    names = [r.name for r in runners]
    if len(set(names)) != len(names):
        raise ValueError(f"runner names repeat: {names}")
    for r in runners:
        if r.prepare:
            r.prepare()
        for _ in range(warmup):
            r.run()
    times = {r.name: [] for r in runners}
    while any(len(t) < runs for t in times.values()):
        for r in runners:
            todo = min(block, runs - len(times[r.name]))
            if todo <= 0:
                continue
            if r.prepare:
                r.prepare()
            time.sleep(pause_s)
            r.run()
            for _ in range(todo):
                start = time.perf_counter_ns()
                r.run()
                times[r.name].append((time.perf_counter_ns() - start) / 1e6)
    return {name: np.asarray(t) for name, t in times.items()}


def example_input(batch: int, input_size: int, seed: int = 0) -> np.ndarray:
    """A fixed input: latency of these networks does not depend on pixel values."""
    return np.random.default_rng(seed).standard_normal((batch, 3, input_size, input_size)).astype(np.float32)


# ---------------------------------------------------------------------------
# Engines


def with_input_size(src: str | Path, dst: str | Path, input_size: int) -> Path:
    """Copy of an ONNX model whose input is (batch, 3, input_size, input_size).

    The exported networks are fully convolutional (global pooling before the classifier), so
    only the declared input shape changes; the stale intermediate shapes are dropped and ONNX
    Runtime infers them again. QDQ INT8 models work the same way: their scales do not depend
    on the spatial size.
    """
    import onnx

    proto = onnx.load(str(src))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise DataError(f"{src}: expected an NCHW input, got rank {len(dims)}")
    for dim in dims[2:]:
        dim.ClearField("dim_param")
        dim.dim_value = int(input_size)
    del proto.graph.value_info[:]
    onnx.save(proto, str(dst))
    return Path(dst)


def ort_runner(name: str, path: str | Path, threads: int, feed: np.ndarray) -> Runner:
    from .export import open_session

    session = open_session(path, threads=threads)
    inputs = {session.get_inputs()[0].name: feed}
    return Runner(name, lambda: session.run(None, inputs))


def openvino_compile(path: str | Path, threads: int, batch: int | None, input_size: int | None):
    """An OpenVINO CPU model compiled for `threads` threads, in FP32 arithmetic.

    INFERENCE_PRECISION_HINT=f32 matters: on CPUs with bf16 or AMX support OpenVINO otherwise
    runs FP32 models in bfloat16, which is a different (less precise) model.
    """
    try:
        import openvino as ov
    except ImportError as exc:
        raise ConfigError("OpenVINO is not installed: `pip install openvino` or drop it from export.latency.engines") from exc
    core = ov.Core()
    try:
        model = core.read_model(str(path))
        if input_size is not None:
            model.reshape([batch if batch is not None else -1, 3, int(input_size), int(input_size)])
        config = {
            "INFERENCE_NUM_THREADS": int(threads),
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        }
        return core.compile_model(model, "CPU", config)
    except RuntimeError as exc:
        raise DataError(f"OpenVINO cannot load {path}: {exc}") from exc


def openvino_runner(name: str, path: str | Path, threads: int, feed: np.ndarray) -> Runner:
    compiled = openvino_compile(path, threads, feed.shape[0], feed.shape[2])
    request = compiled.create_infer_request()
    return Runner(name, lambda: request.infer({0: feed}))


def torch_runner(model: torch.nn.Module, threads: int, feed: np.ndarray) -> Runner:
    x = torch.from_numpy(feed)

    def run():
        with torch.inference_mode():
            return model(x)

    return Runner("torch_eager", run, prepare=lambda: torch.set_num_threads(int(threads)))


def resized_parity(model: torch.nn.Module, fp32_path: Path, input_size: int, seed: int = 1) -> float:
    """Max |ONNX Runtime - PyTorch| logit at `input_size`: the resized ONNX graph is the same network."""
    from .export import open_session

    x = example_input(2, input_size, seed)
    session = open_session(fp32_path, threads=1)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    return float(np.abs(got - ref).max())


# ---------------------------------------------------------------------------
# Measurement


def measure(
    model: torch.nn.Module,
    fp32_path: str | Path,
    int8_path: str | Path | None,
    trained_size: int,
    sizes: Sequence[int],
    threads: Sequence[int],
    engines: Sequence[str],
    warmup: int,
    runs: int,
    throughput_batch: int,
    throughput_runs: int,
) -> dict:
    """Latency (batch 1) and throughput (batch `throughput_batch`) of every engine and precision.

    One record per (input size, threads, batch, engine); engines of one (size, threads, batch)
    are timed interleaved. Returns the records plus ratios of medians for each setting.
    """
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        raise ConfigError(f"export.latency.engines: unknown engine(s) {unknown}; choose from {list(ENGINES)}")
    if min(int(runs), int(throughput_runs), int(throughput_batch)) < 1 or int(warmup) < 0:
        raise ConfigError("export.latency: runs, throughput_runs and throughput_batch must be >= 1, warmup >= 0")
    model = model.eval()
    previous_threads = torch.get_num_threads()
    records, parity = [], {}
    try:
        with tempfile.TemporaryDirectory(prefix="fasflow-latency-") as work:
            for size in latency_sizes(trained_size, sizes):
                files = {"fp32": Path(fp32_path)}
                if int8_path is not None:
                    files["int8"] = Path(int8_path)
                if size != int(trained_size):
                    files = {k: with_input_size(p, Path(work) / f"{k}-{size}.onnx", size) for k, p in files.items()}
                parity[str(size)] = resized_parity(model, files["fp32"], size)
                for n in threads:
                    for batch, count in ((1, runs), (int(throughput_batch), throughput_runs)):
                        feed = example_input(batch, size)
                        runners = _runners(model, files, engines, n, feed)
                        times = time_interleaved(runners, warmup if batch == 1 else max(1, warmup // batch), count)
                        for engine, ms in times.items():
                            stats = summarize(ms)
                            stats["images_per_s"] = 1e3 * batch / stats["median_ms"]
                            records.append({"input_size": size, "threads": int(n), "batch": batch, "engine": engine, **stats})
                        del runners
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "trained_input_size": int(trained_size),
        "input_sizes": latency_sizes(trained_size, sizes),
        "threads": [int(n) for n in threads],
        "throughput_batch": int(throughput_batch),
        "warmup": int(warmup),
        "runs": int(runs),
        "throughput_runs": int(throughput_runs),
        "engines": [e for e in ENGINE_LABELS if any(r["engine"] == e for r in records)],
        "resized_parity_max_abs_logit_diff": parity,
        "records": records,
        "ratios": ratios(records),
        "system": system_info(),
    }


def _runners(model, files: Mapping[str, Path], engines: Sequence[str], threads: int, feed: np.ndarray) -> list[Runner]:
    runners = []
    if "torch" in engines:
        runners.append(torch_runner(model, threads, feed))
    for precision, path in files.items():
        if "onnxruntime" in engines:
            runners.append(ort_runner(f"ort_{precision}", path, threads, feed))
        if "openvino" in engines:
            runners.append(openvino_runner(f"openvino_{precision}", path, threads, feed))
    order = list(ENGINE_LABELS)
    return sorted(runners, key=lambda r: order.index(r.name))


def ratios(records: Sequence[Mapping]) -> list[dict]:
    """Per (size, threads, batch): torch eager / ORT FP32, ORT FP32 / each INT8 engine, and the fastest INT8."""
    out = []
    settings = dict.fromkeys((r["input_size"], r["threads"], r["batch"]) for r in records)
    for size, n, batch in settings:
        med = {r["engine"]: r["median_ms"] for r in records if (r["input_size"], r["threads"], r["batch"]) == (size, n, batch)}
        row: dict = {"input_size": size, "threads": n, "batch": batch}
        if "ort_fp32" in med:
            if "torch_eager" in med:
                row["torch_eager_over_ort_fp32"] = med["torch_eager"] / med["ort_fp32"]
            for engine in ("ort_int8", "openvino_fp32", "openvino_int8"):
                if engine in med:
                    row[f"ort_fp32_over_{engine}"] = med["ort_fp32"] / med[engine]
            int8 = {e: m for e, m in med.items() if e.endswith("_int8")}
            if int8:
                fastest = min(int8, key=int8.get)
                row["fastest_int8"] = fastest
                row["ort_fp32_over_fastest_int8"] = med["ort_fp32"] / int8[fastest]
        out.append(row)
    return out


def find_record(result: Mapping, engine: str, input_size: int, threads: int, batch: int = 1) -> dict | None:
    """The record of one engine at one setting of a latency report, or None."""
    for r in result["records"]:
        if (r["engine"], r["input_size"], r["threads"], r["batch"]) == (engine, int(input_size), int(threads), int(batch)):
            return r
    return None


def measure_trained(
    weights: str | Path,
    summary: str | Path,
    onnx: str | Path,
    int8: str | Path | None,
    out: str | Path,
    threads: int,
    warmup: int,
    runs: int,
    sizes: Sequence[int],
    engines: Sequence[str],
    throughput_batch: int,
    throughput_runs: int,
) -> dict:
    """The latency rule: every engine and precision at 224 px and the trained size, 1/2/all threads.

    `threads` are the cores the job was given (thread counts above the machine's are dropped);
    writes one JSON report to `out`.
    """
    from .io import write_json
    from .models import load_trained
    from .runlog import get_logger

    model, trained = load_trained(weights, summary)
    cores = min(int(threads), available_cores())
    result = measure(
        model, onnx, int8, int(trained["input_size"]), sizes, thread_settings(cores), engines, warmup, runs, throughput_batch, throughput_runs
    )
    result.update({"weights": str(weights), "onnx": str(onnx), "int8": str(int8) if int8 else None})
    log = get_logger()
    for row in result["ratios"]:
        log.info("latency of %s: %s", onnx, row)
    write_json(out, result)
    return result
