"""ONNX export of trained models, validation with onnx.checker, and parity with PyTorch.

The exported file is self-describing: its metadata_props hold the face crop margin, the
face cache size and the network input size, so `fasflow predict` preprocesses an image
exactly as evaluation does without reading the workflow config.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from . import DECISION_THRESHOLD, __version__
from .data import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from .errors import DataError
from .io import atomic_path
from .models import count_parameters, load_trained

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
CLASS_NAMES = ("live", "spoof")  # logit order: index 1 is the positive (spoof) class
META_PREFIX = "fasflow."
# Keys `fasflow predict` needs; written at export, checked when a model is opened.
REQUIRED_METADATA = ("input_size", "face_margin", "face_size")


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    input_size: int,
    opset: int = 17,
    metadata: dict | None = None,
    fold_constants: bool = True,
) -> dict:
    """Export `model` to one self-contained ONNX file with a dynamic batch axis.

    Uses the TorchScript exporter (dynamo=False): it keeps the weights inside the file and
    needs no onnxscript. Constant folding (its default) folds BatchNorm into the convolutions:
    a trained mobilenetv2_100 then takes the paper's 8.46 MiB (8.68 MiB unfolded). ONNX Runtime
    fuses BatchNorm at load time either way, so latency does not change.
    Returns facts about the file (opset, size in MB and MiB, parameter count).
    """
    model = model.eval()
    dummy = torch.zeros(1, 3, input_size, input_size)
    props = {f"{META_PREFIX}{k}": _meta_value(v) for k, v in (metadata or {}).items()}
    props.setdefault(f"{META_PREFIX}input_size", str(int(input_size)))
    props.setdefault(f"{META_PREFIX}classes", json.dumps(list(CLASS_NAMES)))
    props.setdefault(f"{META_PREFIX}mean", json.dumps(list(IMAGENET_MEAN)))
    props.setdefault(f"{META_PREFIX}std", json.dumps(list(IMAGENET_STD)))
    props.setdefault(f"{META_PREFIX}version", __version__)
    path = Path(path)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            # The legacy-exporter deprecation notice is expected: it is chosen on purpose.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=UserWarning)
            torch.onnx.export(
                model,
                (dummy,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                do_constant_folding=fold_constants,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        add_metadata(tmp, props)
        check_onnx(tmp)
    return describe_onnx(path, parameters=count_parameters(model))


def add_metadata(path: str | Path, props: dict[str, str]) -> None:
    """Set metadata_props on an ONNX file in place (weights stay inside the file)."""
    import onnx

    proto = onnx.load(str(path))
    existing = {p.key: p.value for p in proto.metadata_props}
    existing.update(props)
    onnx.helper.set_model_props(proto, existing)
    onnx.save(proto, str(path))


def read_metadata(path: str | Path) -> dict[str, str]:
    """fasflow metadata_props of an ONNX file, without the `fasflow.` prefix."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key[len(META_PREFIX) :]: p.value for p in proto.metadata_props if p.key.startswith(META_PREFIX)}


def check_onnx(path: str | Path) -> None:
    """onnx.checker with shape inference; a malformed file raises DataError naming it."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise DataError(f"{path}: ONNX checker rejected the model: {exc}") from exc


def describe_onnx(path: str | Path, parameters: int | None = None) -> dict:
    """Opset, file size (MB = 10^6 bytes, MiB = 2^20 bytes), stored weights, versions."""
    import onnx

    path = Path(path)
    proto = onnx.load(str(path))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    size = path.stat().st_size
    stored = int(sum(np.prod(t.dims, dtype=np.int64) for t in proto.graph.initializer))
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    info = {
        "path": str(path),
        "opset": int(opset) if opset is not None else None,
        "ir_version": int(proto.ir_version),
        "exporter": f"torch.onnx (TorchScript, dynamo=False) {torch.__version__}",
        "onnx_version": onnx.__version__,
        "size_bytes": size,
        "size_mb": size / 1e6,
        "size_mib": size / 2**20,
        "stored_values": stored,
        "external_data": external,
        "dynamic_batch": bool(dims) and dims[0].dim_param != "",
    }
    if parameters is not None:
        info["parameters"] = int(parameters)
        info["parameters_m"] = parameters / 1e6
    return info


def open_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session; `threads` pins the intra-op thread pool (None = ORT default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: ORT's warnings go to stderr otherwise
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types (Fail, InvalidProtobuf, ...)
        raise DataError(f"cannot load ONNX model {path}: {exc}") from exc


def preprocessed_batches(faces: np.ndarray, input_size: int, batch_size: int = 64) -> Iterator[np.ndarray]:
    """Cached uint8 faces -> float32 NCHW batches through the evaluation transform."""
    transform = eval_transform(input_size)
    for start in range(0, len(faces), batch_size):
        chunk = faces[start : start + batch_size]
        # np.array copies: a memory-mapped cache is read-only and torch warns about it.
        yield torch.stack([transform(np.array(face)) for face in chunk]).numpy()


def softmax_spoof(logits: np.ndarray) -> np.ndarray:
    """P(spoof) from 2-class logits, computed stably in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[:, 1] / e.sum(axis=1)


def onnx_logits(session, faces: np.ndarray, input_size: int, batch_size: int = 64) -> np.ndarray:
    """Logits of an ONNX model over cached faces (evaluation preprocessing)."""
    input_name = session.get_inputs()[0].name
    out = [session.run(None, {input_name: batch})[0] for batch in preprocessed_batches(faces, input_size, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


def parity(
    model: torch.nn.Module,
    session,
    faces: np.ndarray,
    input_size: int,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    batch_size: int = 64,
) -> dict:
    """Compare ONNX Runtime and PyTorch logits on the same preprocessed faces.

    Passes when max |onnx - torch| <= atol + rtol * s, where s is the largest |torch logit|
    over all faces (the scale of the logits), and the predicted labels (P(spoof) >= DECISION_THRESHOLD) are
    identical for every face. The relative term matters for trained models: with logits
    around 20, float32 itself is about 2e-4 away from the exact value in any logit (recorded
    as `fp32_vs_fp64_max_abs_diff`: PyTorch fp32 vs fp64 on the first batch), so no fp32
    engine can meet a purely absolute 1e-4.
    """
    import copy

    model = model.eval()
    input_name = session.get_inputs()[0].name
    max_diff, scale, sum_diff, mismatches, n = 0.0, 0.0, 0.0, 0, 0
    fp32_noise = None
    with torch.no_grad():
        for batch in preprocessed_batches(faces, input_size, batch_size):
            ref = model(torch.from_numpy(batch)).numpy().astype(np.float64)
            got = session.run(None, {input_name: batch})[0].astype(np.float64)
            if fp32_noise is None:
                exact = copy.deepcopy(model).double()(torch.from_numpy(batch).double()).numpy()
                fp32_noise = float(np.abs(ref - exact).max())
            diff = np.abs(got - ref)
            max_diff = max(max_diff, float(diff.max()))
            scale = max(scale, float(np.abs(ref).max()))
            sum_diff += float(diff.sum())
            mismatches += int(np.sum((softmax_spoof(ref) >= DECISION_THRESHOLD) != (softmax_spoof(got) >= DECISION_THRESHOLD)))
            n += len(batch)
    return {
        "n_faces": n,
        "max_abs_logit_diff": max_diff,
        "max_abs_logit": scale,
        "allowed_abs_logit_diff": atol + rtol * scale,
        "mean_abs_logit_diff": sum_diff / max(1, 2 * n),
        "fp32_vs_fp64_max_abs_diff": fp32_noise,
        "label_mismatches": mismatches,
        "labels_identical": mismatches == 0,
        "atol": atol,
        "rtol": rtol,
        "within_tolerance": n > 0 and max_diff <= atol + rtol * scale,
        "passed": n > 0 and max_diff <= atol + rtol * scale and mismatches == 0,
    }


def _meta_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def export_trained(
    name: str,
    weights: str | Path,
    summary_path: str | Path,
    onnx_path: str | Path,
    report_path: str | Path,
    faces_path: str | Path,
    face_margin: float,
    face_size: int,
    opset: int = 17,
    fold_constants: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> dict:
    """A trained model (weights + summary.json) -> `onnx_path` + a JSON report with the parity check.

    Parity runs on every face of `faces_path` (the test face cache). A model that fails it
    is not delivered: the ONNX file is removed and DataError raised.
    """
    from .io import write_json

    model, summary = load_trained(weights, summary_path)
    input_size = int(summary["input_size"])
    faces = np.load(faces_path, mmap_mode="r", allow_pickle=False)
    if faces.ndim != 4 or faces.shape[1:] != (face_size, face_size, 3):
        raise DataError(f"{faces_path}: expected faces of shape (N, {face_size}, {face_size}, 3), got {faces.shape}")
    metadata = {
        "name": name,
        "arch": summary["arch"],
        "input_size": input_size,
        "face_margin": float(face_margin),
        "face_size": int(face_size),
    }
    info = export_onnx(model, onnx_path, input_size, opset, metadata, fold_constants)
    log.info("exported %s: %s", name, info)
    result = parity(model, open_session(onnx_path), faces, input_size, atol=atol, rtol=rtol)
    log.info("parity of %s on %d faces: %s", name, len(faces), result)
    if not result["passed"]:
        Path(onnx_path).unlink(missing_ok=True)
        raise DataError(
            f"{onnx_path}: ONNX Runtime and PyTorch disagree on {faces_path} (max abs logit diff "
            f"{result['max_abs_logit_diff']:.3g}, allowed {result['allowed_abs_logit_diff']:.3g} = {atol:g} + {rtol:g} * max |logit|; "
            f"{result['label_mismatches']} label mismatches)"
        )
    report = {
        "name": name,
        "arch": summary["arch"],
        "input_size": input_size,
        "weights": str(weights),
        "onnx": info,
        "metadata": metadata,
        "parity": {**result, "faces": str(faces_path)},
    }
    write_json(report_path, report)
    return report
