"""What was tried to make INT8 fast on CPU: quantization formats and types, ORT session options,
OpenVINO (and NNCF when installed), all timed interleaved in one run. Prints Markdown tables.

Not part of `make bench` (it takes a few minutes); docs/deployment.md records its output.
Usage: python benchmarks/explore_int8.py [--arch mobilenetv2_100] [--threads 2] [--runs 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fasflow.errors import DataError  # noqa: E402
from fasflow.export import export_onnx, preprocessed_batches  # noqa: E402
from fasflow.latency import Runner, openvino_compile, summarize, system_info, time_interleaved  # noqa: E402
from fasflow.models import create_model  # noqa: E402
from fasflow.quantize import calibrate, preprocess  # noqa: E402

SIZE = 224


def smooth_faces(n: int, seed: int = 0) -> np.ndarray:
    coarse = np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    return np.kron(coarse, np.ones((1, SIZE // 8, SIZE // 8, 1), dtype=np.uint8))


def variants():
    from onnxruntime.quantization import QuantFormat, QuantType

    u8, s8, qdq = QuantType.QUInt8, QuantType.QInt8, QuantFormat.QDQ
    return {
        "QDQ U8S8 per-channel (chosen)": dict(quant_format=qdq, activation_type=u8, weight_type=s8, per_channel=True),
        "QDQ U8S8 per-tensor": dict(quant_format=qdq, activation_type=u8, weight_type=s8, per_channel=False),
        "QDQ U8S8 per-channel reduce_range": dict(quant_format=qdq, activation_type=u8, weight_type=s8, per_channel=True, reduce_range=True),
        "QDQ U8U8 per-channel": dict(quant_format=qdq, activation_type=u8, weight_type=u8, per_channel=True),
        "QDQ S8S8 per-channel": dict(quant_format=qdq, activation_type=s8, weight_type=s8, per_channel=True),
        "QDQ S8S8 symmetric activations": dict(
            quant_format=qdq, activation_type=s8, weight_type=s8, per_channel=True, extra_options={"ActivationSymmetric": True}
        ),
        "QDQ U8S8 Conv/Gemm only": dict(quant_format=qdq, activation_type=u8, weight_type=s8, per_channel=True, op_types_to_quantize=["Conv", "Gemm"]),
        "QDQ U8S8 keep Relu/Clip": dict(
            quant_format=qdq, activation_type=u8, weight_type=s8, per_channel=True, extra_options={"QDQKeepRemovableActivations": True}
        ),
        "QOperator U8S8 per-channel": dict(quant_format=QuantFormat.QOperator, activation_type=u8, weight_type=s8, per_channel=True),
    }


def ort_session(path, threads: int, level: str = "all", entries: dict | None = None, save: Path | None = None):
    import onnxruntime as ort

    levels = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[level]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if save is not None:
        options.optimized_model_filepath = str(save)
    for k, v in (entries or {}).items():
        options.add_session_config_entry(k, v)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_runner(name, session, x) -> Runner:
    feed = {session.get_inputs()[0].name: x}
    return Runner(name, lambda: session.run(None, feed))


def ov_runner(name, compiled, x) -> Runner:
    request = compiled.create_infer_request()
    return Runner(name, lambda: request.infer({0: x}))


def load_ms(make, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        make()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main() -> int:
    from onnxruntime.quantization import quantize_static

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenetv2_100")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = create_model(args.arch).eval()
    faces = smooth_faces(32)
    x = next(preprocessed_batches(faces[:1], SIZE, 1))
    info = system_info()
    print(f"explore_int8: {args.arch} at {SIZE} px, batch 1, {args.threads} thread(s), {args.runs} runs interleaved; "
          f"{info['cpu_model']}, flags {[k for k, v in info['cpu_flags'].items() if v]}, load {info['load_average_1min']:.2f}; "
          f"ORT {info['onnxruntime']}, OpenVINO {info['openvino']}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        fp32 = work / "fp32.onnx"
        export_onnx(model, fp32, SIZE, metadata={"input_size": SIZE})
        pre = preprocess(fp32, work / "pre.onnx")
        cache = calibrate(pre, faces, SIZE, "minmax", work / "calib.json")
        files = {}
        for name, kw in variants().items():
            files[name] = work / f"v{len(files)}.onnx"
            quantize_static(str(pre), str(files[name]), calibration_data_reader=None, calibration_cache_path=str(cache), **kw)
        chosen = files["QDQ U8S8 per-channel (chosen)"]

        # 1. Quantization variants, each in ONNX Runtime and OpenVINO, against ORT FP32.
        runners = [ort_runner("ORT FP32", ort_session(fp32, args.threads), x), ov_runner("OpenVINO FP32", openvino_compile(fp32, args.threads, 1, SIZE), x)]
        for name, path in files.items():
            runners.append(ort_runner(f"ORT {name}", ort_session(path, args.threads), x))
            try:
                runners.append(ov_runner(f"OpenVINO {name}", openvino_compile(path, args.threads, 1, SIZE), x))
            except DataError as exc:  # QOperator's com.microsoft ops have no OpenVINO conversion
                print(f"(OpenVINO cannot read {name}: {str(exc).splitlines()[-1]})")
        try:
            import nncf
            import openvino as ov

            data = nncf.Dataset(list(preprocessed_batches(faces, SIZE, 1)))
            quantized = nncf.quantize(ov.convert_model(str(fp32)), data, subset_size=len(faces))
            compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": args.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
            runners.append(ov_runner(f"OpenVINO NNCF INT8 (nncf {nncf.__version__})", compiled, x))
        except ImportError:
            print("(nncf not installed: its row is left out)")
        report("Quantization variants", time_interleaved(runners, args.warmup, args.runs), "ORT FP32")

        # 2. ONNX Runtime session options, FP32 and the chosen INT8 file.
        runners = []
        for label, path in (("FP32", fp32), ("INT8", chosen)):
            saved = work / f"{label}.optimized.onnx"
            runners += [
                ort_runner(f"ORT {label} ENABLE_ALL (default)", ort_session(path, args.threads, save=saved), x),
                ort_runner(f"ORT {label} ENABLE_EXTENDED", ort_session(path, args.threads, "extended"), x),
                ort_runner(f"ORT {label} ENABLE_BASIC", ort_session(path, args.threads, "basic"), x),
                ort_runner(f"ORT {label} allow_spinning=0", ort_session(path, args.threads, entries={"session.intra_op.allow_spinning": "0"}), x),
                ort_runner(f"ORT {label} worker pinned to core 2", ort_session(path, args.threads, entries={"session.intra_op_thread_affinities": "2"}), x)
                if args.threads == 2 else None,
                ort_runner(f"ORT {label} saved optimized model, no re-optimisation", ort_session(saved, args.threads, "none"), x),
            ]
        report("ONNX Runtime session options", time_interleaved([r for r in runners if r], args.warmup, args.runs), "ORT FP32 ENABLE_ALL (default)")

        # 3. One-time model load: session creation / compilation.
        print("\n### Model load (median of 5, ms)\n\n| what | ms |\n|---|---:|")
        for label, path in (("FP32", fp32), ("INT8", chosen)):
            saved = work / f"{label}.optimized.onnx"
            print(f"| ORT {label} session | {load_ms(lambda: ort_session(path, args.threads)):.1f} |")
            print(f"| ORT {label} session from the saved optimized model | {load_ms(lambda: ort_session(saved, args.threads, 'none')):.1f} |")
            print(f"| OpenVINO {label} read + compile | {load_ms(lambda: openvino_compile(path, args.threads, None, None)):.1f} |")
    return 0


def report(title: str, times: dict, reference: str) -> None:
    ref = np.median(times[reference])
    print(f"\n### {title}\n\n| engine / variant | median ms | p95 ms | {reference} / this |\n|---|---:|---:|---:|")
    for name, ms in times.items():
        s = summarize(ms)
        print(f"| {name} | {s['median_ms']:.2f} | {s['p95_ms']:.2f} | {ref / s['median_ms']:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
