"""Static INT8 quantization (QDQ) of an exported model, calibrated on validation faces.

Only static QDQ was faster than fp32 in ONNX Runtime on the CPUs measured here (QOperator
and dynamic quantization were slower), so it is the one offered. The INT8 model keeps the
fp32 model's fasflow metadata, so `fasflow predict` can use it as well.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from .errors import DataError
from .export import META_PREFIX, add_metadata, check_onnx, describe_onnx, onnx_logits, preprocessed_batches, softmax_spoof
from .io import atomic_path

log = logging.getLogger(__name__)


def calibration_indices(n_faces: int, size: int) -> np.ndarray:
    """`size` indices spread evenly over the faces: deterministic, and covers every subject block."""
    if n_faces == 0:
        raise DataError("no validation faces to calibrate INT8 quantization with")
    size = min(size, n_faces)
    return np.unique(np.linspace(0, n_faces - 1, size).round().astype(np.int64))


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration_faces: np.ndarray,
    input_size: int,
    per_channel: bool = True,
    batch_size: int = 16,
) -> dict:
    """Static QDQ INT8 (uint8 activations, int8 weights, MinMax calibration) of `fp32_path`.

    The model is first run through ONNX Runtime's quantization pre-processing (shape
    inference and graph optimisation), which makes the INT8 graph markedly faster.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    faces = np.asarray(calibration_faces)
    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name

    class FaceReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = preprocessed_batches(faces, input_size, batch_size)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory(prefix="fasflow-int8-") as work, atomic_path(out_path) as tmp:
        pre = Path(work) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(tmp),
            FaceReader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        source = onnx.load(str(fp32_path), load_external_data=False)
        meta = {p.key: p.value for p in source.metadata_props if p.key.startswith(META_PREFIX)}
        meta[f"{META_PREFIX}precision"] = "int8-static-qdq"
        add_metadata(tmp, meta)
        check_onnx(tmp)
    info = describe_onnx(out_path)
    info.update(
        {
            "quantization": "static QDQ, activations uint8, weights int8, MinMax calibration",
            "per_channel": per_channel,
            "calibration_faces": int(len(faces)),
        }
    )
    return info


def compare_int8(
    fp32_session,
    int8_session,
    faces: np.ndarray,
    labels: np.ndarray,
    spoof_types: np.ndarray | None,
    input_size: int,
    threshold: float = 0.5,
) -> dict:
    """Test metrics of the fp32 and INT8 models side by side, and how often they agree."""
    from .metrics import metrics_at_threshold

    scores = {}
    for name, session in (("fp32", fp32_session), ("int8", int8_session)):
        scores[name] = softmax_spoof(onnx_logits(session, faces, input_size))
    labels = np.asarray(labels)
    out = {"threshold": threshold, "n_faces": int(len(labels))}
    for name, score in scores.items():
        m = metrics_at_threshold(labels, score, threshold, spoof_types)
        out[name] = {k: m[k] for k in ("accuracy", "f1", "apcer", "bpcer", "acer", "apcer_pais", "acer_iso") if k in m}
    agree = (scores["fp32"] >= threshold) == (scores["int8"] >= threshold)
    out["label_agreement"] = float(agree.mean()) if len(agree) else float("nan")
    out["max_abs_score_diff"] = float(np.abs(scores["fp32"] - scores["int8"]).max()) if len(agree) else float("nan")
    out["acer_change_points"] = 100.0 * (out["int8"]["acer"] - out["fp32"]["acer"])
    return out


def quantize_trained(
    name: str,
    fp32_path: str | Path,
    int8_path: str | Path,
    report_path: str | Path,
    val_faces_path: str | Path,
    test_faces_path: str | Path,
    test_manifest_path: str | Path,
    calibration_size: int,
    per_channel: bool = True,
) -> dict:
    """INT8 model calibrated on validation faces, and its test metrics next to fp32's."""
    import polars as pl

    from .export import open_session, read_metadata
    from .io import write_json

    input_size = int(read_metadata(fp32_path)["input_size"])
    val_faces = np.load(val_faces_path, mmap_mode="r", allow_pickle=False)
    calib = val_faces[calibration_indices(len(val_faces), calibration_size)]
    info = quantize_int8(fp32_path, int8_path, calib, input_size, per_channel=per_channel)
    test_faces = np.load(test_faces_path, mmap_mode="r", allow_pickle=False)
    manifest = pl.read_parquet(test_manifest_path, columns=["label", "spoof_type"])
    if manifest.height != len(test_faces):
        raise DataError(f"{test_faces_path} holds {len(test_faces)} faces but {test_manifest_path} lists {manifest.height}")
    test = compare_int8(
        open_session(fp32_path),
        open_session(int8_path),
        test_faces,
        manifest["label"].to_numpy(),
        manifest["spoof_type"].to_numpy(),
        input_size,
    )
    log.info("INT8 %s: %s", name, test)
    report = {"name": name, "fp32": str(fp32_path), "onnx": info, "test": test}
    write_json(report_path, report)
    return report
