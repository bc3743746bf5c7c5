"""Static INT8 quantization (QDQ) of an exported model, its recipe chosen on validation faces.

What was measured (docs/deployment.md has the tables): on x86 CPUs, ONNX Runtime's fast INT8
path is QDQ with uint8 activations and int8 weights (U8S8); S8S8 and U8U8 ran at about FP32
speed, QOperator was no faster than QDQ and OpenVINO cannot read it. The same QDQ file runs in
OpenVINO, which executes the students' INT8 fastest. Per-channel weights, ORT's pre-processing (shape inference and graph
optimisation) and the removal of Relu/Clip that the quantization range already implies are
always used; what varies per model is chosen on **validation** faces, never test faces:

- the calibration method (min-max, entropy, percentile), and
- which nodes stay in FP32: nothing, then the activation gates (Sigmoid and Mul: SiLU and
  squeeze-excite blocks), then also the first convolution and the classifier.

Candidates are tried in that order of exclusions; the first level at which some calibration
method keeps the validation ACER within `max_val_acer_change` of FP32 wins, and among its
accepted methods the one whose decisions agree most with FP32. When no candidate passes, the
model falls back to FP32: the ".int8.onnx" file then holds the FP32 graph, its metadata and
report say so, and Table 4 marks it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from .errors import ConfigError, DataError
from .export import META_PREFIX, add_metadata, check_onnx, describe_onnx, open_session, preprocessed_batches, softmax_spoof
from .io import atomic_path

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Histogram settings: ORT's entropy default (128 bins for 128 quantized bins) leaves a single
# candidate threshold, i.e. min-max again; 512 bins give the KL search room at a bearable cost.
HISTOGRAM_OPTIONS = {
    "minmax": {},
    "entropy": {"num_bins": 512, "num_quantized_bins": 128},
    "percentile": {"num_bins": 2048, "percentile": 99.999},
}
GATE_OPS = ("Sigmoid", "HardSigmoid", "Mul", "HardSwish")  # SiLU, squeeze-excite gates
# Faces per calibration pass at 224 px: histogram calibrators hold every activation of a pass
# (EfficientNet-B0 at 224 px, 16 faces: about 2.5 GB peak with entropy). Smaller inputs take
# proportionally more faces per pass (calibration_chunk).
CALIBRATION_CHUNK = 16
PRECISION_INT8 = "int8-static-qdq"
PRECISION_FALLBACK = "fp32-fallback"


def calibration_chunk(input_size: int) -> int:
    """Faces per calibration pass: the same activation memory as CALIBRATION_CHUNK faces at 224 px.

    Fewer passes matter beyond memory: ORT widens a histogram at its old bin width whenever a later
    pass reaches further than the first, so a tensor whose first pass was nearly constant can grow
    to millions of bins, and the entropy search over them (quadratic, in Python) then runs for
    hours (seen: a from-scratch EfficientNet-B0 at 48 px, 4 passes of 16 faces, over 15 min).
    """
    return max(CALIBRATION_CHUNK, int(CALIBRATION_CHUNK * (224 / max(int(input_size), 1)) ** 2))


def calibration_indices(n_faces: int, size: int) -> np.ndarray:
    """`size` indices spread evenly over the faces: deterministic, and covers every subject block."""
    if n_faces == 0:
        raise DataError("no validation faces to calibrate INT8 quantization with")
    size = min(size, n_faces)
    return np.unique(np.linspace(0, n_faces - 1, size).round().astype(np.int64))


def check_methods(methods: Sequence[str]) -> list[str]:
    methods = list(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in CALIBRATION_METHODS]
    if unknown or not methods:
        raise ConfigError(f"export.int8.calibration_methods: {methods} must be a non-empty subset of {list(CALIBRATION_METHODS)}")
    return methods


# ---------------------------------------------------------------------------
# The steps of one quantization


def preprocess(fp32_path: str | Path, out_path: str | Path) -> Path:
    """ONNX Runtime's quantization pre-processing: shape inference and graph optimisation."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True)
    return Path(out_path)


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[method]


def _quantizable_op_types() -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


class _Batches:
    """An ORT CalibrationDataReader over preprocessed face batches."""

    def __init__(self, input_name: str, batches: Iterator[np.ndarray]) -> None:
        self.input_name, self.batches = input_name, batches

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def calibrate(pre_path: str | Path, faces: np.ndarray, input_size: int, method: str, cache_path: str | Path) -> Path:
    """Activation ranges of `pre_path` over `faces` with `method`, saved as an ORT calibration cache.

    Faces go through in passes of one batch of `calibration_chunk(input_size)`, so memory stays bounded at
    224 px (histogram calibrators keep every intermediate tensor of a pass until it is binned,
    and stack the batches of a pass: batches of unequal size in one pass would break them).
    The cache lets every exclusion candidate reuse one calibration.
    """
    import onnx
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    pre_path, cache_path = Path(pre_path), Path(cache_path)
    input_name = onnx.load(str(pre_path), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="fasflow-calib-") as work:
        calibrator = create_calibrator(
            pre_path,
            _quantizable_op_types(),
            augmented_model_path=str(Path(work) / "augmented.onnx"),
            calibrate_method=_ort_method(method),
            extra_options=dict(HISTOGRAM_OPTIONS[method]),
        )
        per_pass = calibration_chunk(input_size)
        for start in range(0, len(faces), per_pass):
            chunk = np.asarray(faces[start : start + per_pass])
            calibrator.collect_data(_Batches(input_name, preprocessed_batches(chunk, input_size, per_pass)))
        save_tensors_data(calibrator.compute_data(), cache_path)
        del calibrator
    return cache_path


def quantize_with(
    pre_path: str | Path,
    out_path: str | Path,
    cache_path: str | Path,
    method: str,
    per_channel: bool,
    reduce_range: bool,
    excluded: Sequence[str] = (),
) -> Path:
    """QDQ INT8 (uint8 activations, int8 weights) of `pre_path` with the ranges of `cache_path`."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(pre_path),
        str(out_path),
        calibration_data_reader=None,
        calibration_cache_path=str(cache_path),
        calibrate_method=_ort_method(method),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(excluded),
    )
    return Path(out_path)


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration_faces: np.ndarray,
    input_size: int,
    method: str = "minmax",
    per_channel: bool = True,
    reduce_range: bool = False,
    excluded: Sequence[str] = (),
) -> dict:
    """One fixed recipe, no selection: pre-process, calibrate on `calibration_faces`, quantize.

    The INT8 file keeps the FP32 file's fasflow metadata (benchmarks and tests use this; the
    workflow's `run_quantize` chooses the recipe on validation faces).
    """
    fp32_path = Path(fp32_path)
    with tempfile.TemporaryDirectory(prefix="fasflow-int8-") as work:
        work = Path(work)
        pre = preprocess(fp32_path, work / "pre.onnx")
        cache = calibrate(pre, calibration_faces, input_size, method, work / "calib.json")
        quantize_with(pre, work / "int8.onnx", cache, method, per_channel, reduce_range, excluded)
        recipe = {"calibration": method, "per_channel": per_channel, "reduce_range": reduce_range, "excluded_nodes": list(excluded)}
        _write_model(work / "int8.onnx", Path(out_path), fp32_path, PRECISION_INT8, recipe)
    return describe_onnx(out_path)


def exclusion_levels(pre_path: str | Path) -> list[tuple[str, list[str]]]:
    """Node sets kept in FP32, from none to most; levels that add nothing for this graph are skipped.

    1. none; 2. the activation gates (Sigmoid/Mul of SiLU and squeeze-excite: the sensitive
    parts of EfficientNet); 3. also the first convolution and the last Gemm/MatMul (the layers
    that see raw pixels and produce the logits).
    """
    import onnx

    graph = onnx.load(str(pre_path), load_external_data=False).graph
    nodes = list(graph.node)
    gates = [n.name for n in nodes if n.op_type in GATE_OPS]
    input_names = {i.name for i in graph.input}
    output_names = {o.name for o in graph.output}
    first = [n.name for n in nodes if n.op_type == "Conv" and set(n.input) & input_names][:1]
    heads = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]
    last = heads[-1:] or [n.name for n in nodes if set(n.output) & output_names][:1]
    levels = [("none", []), ("activation-gates", gates), ("activation-gates+first-last", gates + first + last)]
    out: list[tuple[str, list[str]]] = []
    for name, excluded in levels:
        excluded = list(dict.fromkeys(excluded))
        if not out or set(excluded) != set(out[-1][1]):
            out.append((name, excluded))
    return out


# ---------------------------------------------------------------------------
# Judging a candidate


def network_inputs(faces: np.ndarray, input_size: int, path: str | Path, batch_size: int = 64) -> np.ndarray:
    """The evaluation tensors of `faces`, preprocessed once into a float32 file (N, 3, S, S) and mapped.

    Every candidate is scored on the same validation faces: preprocessing them once (on disk,
    so 6,000 faces at 224 px need no 3.6 GB of memory) makes a candidate cost its inference only.
    """
    inputs = np.lib.format.open_memmap(str(path), mode="w+", dtype=np.float32, shape=(len(faces), 3, input_size, input_size))
    for start in range(0, len(faces), batch_size):
        inputs[start : start + batch_size] = next(preprocessed_batches(faces[start : start + batch_size], input_size, batch_size))
    inputs.flush()
    return inputs


def score_faces(path: str | Path, inputs: np.ndarray, threads: int | None = None, batch_size: int = 64) -> np.ndarray:
    """P(spoof) of every preprocessed face (see network_inputs) with ONNX Runtime."""
    session = open_session(path, threads=threads)
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: np.asarray(inputs[i : i + batch_size])})[0] for i in range(0, len(inputs), batch_size)]
    return softmax_spoof(np.concatenate(out)) if out else np.zeros(0)


def openvino_scores(path: str | Path, inputs: np.ndarray, threads: int | None = None, batch_size: int = 64) -> np.ndarray:
    """P(spoof) of every preprocessed face with OpenVINO reading the same ONNX file (FP32 arithmetic outside INT8 ops)."""
    from .latency import openvino_compile

    compiled = openvino_compile(path, threads or 1, None, None)
    out = [compiled({0: np.asarray(inputs[i : i + batch_size])})[0] for i in range(0, len(inputs), batch_size)]
    return softmax_spoof(np.concatenate(out)) if out else np.zeros(0)


def agreement(reference: np.ndarray, scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """How far `scores` are from the FP32 `reference`: decision flips overall and per class, score gap."""
    flips = (reference >= threshold) != (scores >= threshold)
    labels = np.asarray(labels)
    live, spoof = labels == 0, labels == 1
    return {
        "flip_rate": float(flips.mean()) if len(flips) else float("nan"),
        "live_flip_rate": float(flips[live].mean()) if live.any() else 0.0,
        "spoof_flip_rate": float(flips[spoof].mean()) if spoof.any() else 0.0,
        "mean_abs_score_diff": float(np.abs(reference - scores).mean()) if len(flips) else float("nan"),
        "max_abs_score_diff": float(np.abs(reference - scores).max()) if len(flips) else float("nan"),
    }


def _rates(labels, scores, spoof_types, threshold) -> dict:
    from .metrics import metrics_at_threshold

    m = metrics_at_threshold(np.asarray(labels), scores, threshold, spoof_types)
    return {k: m[k] for k in ("accuracy", "f1", "apcer", "bpcer", "acer", "apcer_pais", "acer_iso") if k in m}


def choose_recipe(
    pre_path: Path,
    work: Path,
    calib_faces: np.ndarray,
    val_inputs: np.ndarray,
    val_labels: np.ndarray,
    val_spoof_types: np.ndarray | None,
    input_size: int,
    methods: Sequence[str],
    per_channel: bool,
    reduce_range: bool,
    max_val_acer_change: float,
    threshold: float,
    threads: int | None,
) -> dict:
    """Try the candidates on validation faces (see the module docstring); return the selection record."""
    reference = score_faces(pre_path, val_inputs, threads)
    fp32 = _rates(val_labels, reference, val_spoof_types, threshold)
    caches, failed = {}, {}
    for method in methods:
        try:
            caches[method] = calibrate(pre_path, calib_faces, input_size, method, work / f"{method}.calib.json")
        except (ValueError, RuntimeError) as exc:  # e.g. numpy cannot bin a tensor whose range is (nearly) zero
            log.warning("INT8 calibration %s failed, the method is skipped: %s", method, exc)
            failed[method] = f"{type(exc).__name__}: {exc}"
    if not caches:
        raise DataError(f"{pre_path}: every INT8 calibration method failed: {failed}")
    candidates, chosen = [], None
    for level, excluded in exclusion_levels(pre_path):
        accepted = []
        for method in caches:
            path = work / f"{method}.{level}.onnx"
            quantize_with(pre_path, path, caches[method], method, per_channel, reduce_range, excluded)
            scores = score_faces(path, val_inputs, threads)
            rates = _rates(val_labels, scores, val_spoof_types, threshold)
            change = rates["acer"] - fp32["acer"]
            row = {
                "calibration": method,
                "exclusion": level,
                "excluded_nodes": len(excluded),
                "val_acer": rates["acer"],
                "val_acer_change": change,
                **agreement(reference, scores, val_labels, threshold),
                "accepted": abs(change) <= max_val_acer_change,
                "path": str(path),
                "excluded": excluded,
            }
            log.info("INT8 candidate %s / %s: val ACER %.4f (FP32 %.4f), flips %.4f", method, level, rates["acer"], fp32["acer"], row["flip_rate"])
            candidates.append(row)
            if row["accepted"]:
                accepted.append(row)
        if accepted:
            chosen = min(accepted, key=lambda r: (r["flip_rate"], r["mean_abs_score_diff"], methods.index(r["calibration"])))
            break
    for row in candidates:
        row["chosen"] = row is chosen
    return {
        "criterion": "first exclusion level where |val ACER(INT8) - val ACER(FP32)| <= max_val_acer_change; "
        "then fewest decision flips against FP32, then smallest mean |score difference|",
        "max_val_acer_change": float(max_val_acer_change),
        "threshold": float(threshold),
        "val_faces": int(len(val_inputs)),
        "fp32_val": fp32,
        "failed_calibrations": failed,
        "candidates": candidates,
        "chosen": chosen,
    }


# ---------------------------------------------------------------------------
# The workflow step


def _load_split(faces_path, manifest_path) -> tuple[np.ndarray, "object"]:
    import polars as pl

    faces = np.load(faces_path, mmap_mode="r", allow_pickle=False)
    manifest = pl.read_parquet(manifest_path)
    missing = [c for c in ("label", "spoof_type", "subject_id") if c not in manifest.columns]
    if missing:
        raise DataError(f"{manifest_path} lacks the columns {missing}")
    if manifest.height != len(faces):
        raise DataError(f"{faces_path} holds {len(faces)} faces but {manifest_path} lists {manifest.height}")
    return faces, manifest


def test_report(
    fp32_path: Path,
    int8_path: Path,
    faces: np.ndarray,
    manifest,
    input_size: int,
    threshold: float,
    openvino: bool,
    bootstrap_n: int,
    seed: int,
    ci_level: float,
    threads: int | None,
) -> dict:
    """Test metrics of FP32 and INT8 (ONNX Runtime, and OpenVINO on the same file) side by side.

    Only reported: nothing here feeds back into the choice of recipe. The FP32 ACER's
    subject-level bootstrap interval says whether the INT8 ACER is within FP32's uncertainty.
    """
    from .metrics import bootstrap_intervals

    labels = manifest["label"].to_numpy()
    types = manifest["spoof_type"].to_numpy()
    with tempfile.TemporaryDirectory(prefix="fasflow-int8-test-") as work:
        inputs = network_inputs(faces, input_size, Path(work) / "test.npy")
        scores = {"fp32": score_faces(fp32_path, inputs, threads), "int8": score_faces(int8_path, inputs, threads)}
        if openvino:
            scores["openvino_fp32"] = openvino_scores(fp32_path, inputs, threads)
            scores["openvino_int8"] = openvino_scores(int8_path, inputs, threads)
        del inputs
    out: dict = {"threshold": threshold, "n_faces": int(len(labels))}
    for name, s in scores.items():
        out[name] = _rates(labels, s, types, threshold)
    agree = agreement(scores["fp32"], scores["int8"], labels, threshold)
    out["label_agreement"] = 1.0 - agree["flip_rate"] if len(labels) else float("nan")
    out["max_abs_score_diff"] = agree["max_abs_score_diff"]
    out["acer_change_points"] = 100.0 * (out["int8"]["acer"] - out["fp32"]["acer"])
    if len(labels):
        interval = bootstrap_intervals(
            labels, scores["fp32"], manifest["subject_id"].to_numpy(), types, threshold, n_resamples=bootstrap_n, seed=seed, level=ci_level
        )["acer"]
        out["fp32_acer_interval"] = interval
        for name in [n for n in scores if n.endswith("int8")]:
            out[f"{name}_acer_within_fp32_interval"] = bool(interval[0] <= out[name]["acer"] <= interval[1])
    return out


def _write_model(source: Path, out_path: Path, fp32_path: Path, precision: str, recipe: Mapping | None) -> None:
    """Copy `source` to `out_path` atomically with the FP32 file's fasflow metadata and the recipe."""
    import json

    import onnx

    src_meta = onnx.load(str(fp32_path), load_external_data=False)
    meta = {p.key: p.value for p in src_meta.metadata_props if p.key.startswith(META_PREFIX)}
    meta[f"{META_PREFIX}precision"] = precision
    if recipe:
        meta[f"{META_PREFIX}int8_recipe"] = json.dumps(recipe, sort_keys=True)
    with atomic_path(out_path) as tmp:
        shutil.copyfile(source, tmp)
        add_metadata(tmp, meta)
        check_onnx(tmp)


def run_quantize(
    name: str,
    fp32_path: str | Path,
    int8_path: str | Path,
    report_path: str | Path,
    val_faces_path: str | Path,
    val_manifest_path: str | Path,
    test_faces_path: str | Path,
    test_manifest_path: str | Path,
    calibration_size: int,
    calibration_methods: Sequence[str],
    per_channel: bool,
    reduce_range: bool,
    max_val_acer_change: float,
    openvino: bool,
    bootstrap_n: int,
    seed: int,
    ci_level: float,
    threads: int | None = None,
) -> dict:
    """The quantize rule: choose the INT8 recipe on validation faces, write the model and its report.

    Writes `int8_path` (the INT8 model, or the FP32 graph when it falls back) and a JSON report
    with every candidate's validation figures and the test metrics of both precisions.
    """
    from .export import read_metadata
    from .io import write_json
    from .metrics import DECISION_THRESHOLD as threshold

    methods = check_methods(calibration_methods)
    if not 0 <= max_val_acer_change <= 1:
        raise ConfigError(f"export.int8.max_val_acer_change must be in [0, 1], got {max_val_acer_change}")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    input_size = int(read_metadata(fp32_path)["input_size"])
    val_faces, val_manifest = _load_split(val_faces_path, val_manifest_path)
    calib = np.asarray(val_faces[calibration_indices(len(val_faces), calibration_size)])
    with tempfile.TemporaryDirectory(prefix="fasflow-int8-") as work:
        work = Path(work)
        pre = preprocess(fp32_path, work / "pre.onnx")
        val_inputs = network_inputs(val_faces, input_size, work / "val.npy")
        selection = choose_recipe(
            pre, work, calib, val_inputs, val_manifest["label"].to_numpy(), val_manifest["spoof_type"].to_numpy(), input_size,
            methods, per_channel, reduce_range, max_val_acer_change, threshold, threads,
        )
        chosen = selection["chosen"]
        recipe = None
        if chosen is not None:
            recipe = {
                "format": "QDQ",
                "activations": "uint8",
                "weights": "int8",
                "per_channel": bool(per_channel),
                "reduce_range": bool(reduce_range),
                "calibration": chosen["calibration"],
                "calibration_faces": int(len(calib)),
                "exclusion": chosen["exclusion"],
                "excluded_nodes": chosen["excluded"],
            }
            _write_model(Path(chosen["path"]), int8_path, fp32_path, PRECISION_INT8, recipe)
        else:
            log.warning("INT8 %s: no candidate kept val ACER within %.4f of FP32; the INT8 file holds the FP32 model", name, max_val_acer_change)
            _write_model(fp32_path, int8_path, fp32_path, PRECISION_FALLBACK, None)
    for row in selection["candidates"]:
        row.pop("path")
        row.pop("excluded")
    if chosen is not None:
        selection["chosen"] = {k: v for k, v in chosen.items() if k not in ("path", "excluded")}
    test_faces, test_manifest = _load_split(test_faces_path, test_manifest_path)
    test = test_report(fp32_path, int8_path, test_faces, test_manifest, input_size, threshold, openvino, bootstrap_n, seed, ci_level, threads)
    log.info("INT8 %s on test: %s", name, test)
    report = {
        "name": name,
        "fp32": str(fp32_path),
        "precision": PRECISION_INT8 if recipe else PRECISION_FALLBACK,
        "fallback": recipe is None,
        "recipe": recipe,
        "selection": selection,
        "onnx": describe_onnx(int8_path),
        "test": test,
    }
    write_json(report_path, report)
    return report
