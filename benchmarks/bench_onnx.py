"""CPU inference at batch 1 for mobilenetv2_100 at 224 px: ONNX Runtime fp32 against PyTorch eager,
and static QDQ INT8 against fp32, all measured in one run on all cores of this machine.

Targets (issue 6): PyTorch eager / ORT fp32 median latency >= 3; report ORT fp32 / INT8.
Usage: python benchmarks/bench_onnx.py [--runs 200] [--warmup 20] [--size 224] [--threads N]
The machine must be otherwise idle: a neighbouring job changes latency several-fold.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fasflow.export import export_onnx  # noqa: E402
from fasflow.latency import available_cores, measure  # noqa: E402
from fasflow.models import create_model  # noqa: E402
from fasflow.quantize import quantize_int8  # noqa: E402

TARGET_EAGER_OVER_ORT = 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--calibration", type=int, default=32, help="random faces used to calibrate INT8")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = create_model("mobilenetv2_100", dropout=0.2).eval()
    rng = np.random.default_rng(0)
    # Smooth random images (upsampled noise) stand in for faces: latency does not depend on content.
    coarse = rng.integers(0, 256, size=(args.calibration, 8, 8, 3), dtype=np.uint8)
    faces = np.kron(coarse, np.ones((1, args.size // 8, args.size // 8, 1), dtype=np.uint8))
    with tempfile.TemporaryDirectory() as work:
        fp32, int8 = Path(work) / "m.onnx", Path(work) / "m.int8.onnx"
        info = export_onnx(model, fp32, args.size, metadata={"input_size": args.size})
        quantize_int8(fp32, int8, faces, args.size)
        result = measure(fp32, model, args.size, [args.threads], args.warmup, args.runs, int8_path=int8)
    res = result["results"][str(args.threads)]
    sysinfo = result["system"]
    print(f"bench_onnx: mobilenetv2_100 at {args.size} px, batch 1, {args.threads} thread(s), "
          f"{args.runs} runs after {args.warmup} warm-up; {sysinfo['cpu_model']}, ORT {sysinfo['onnxruntime']}, "
          f"torch {sysinfo['torch']}")
    print(f"  ONNX file: {info['size_mib']:.2f} MiB ({info['size_mb']:.2f} MB), {info['parameters'] / 1e6:.2f} M parameters")
    for engine in ("torch_eager", "onnx_fp32", "onnx_int8"):
        r = res[engine]
        print(f"  {engine:12s} mean {r['mean_ms']:8.2f} ms  median {r['median_ms']:8.2f}  p90 {r['p90_ms']:8.2f}  p95 {r['p95_ms']:8.2f}")
    eager_over_ort = res["ratios"]["torch_eager_over_onnx_fp32_median"]
    fp32_over_int8 = res["ratios"]["onnx_fp32_over_int8_median"]
    verdict = "ok" if eager_over_ort >= TARGET_EAGER_OVER_ORT else f"BELOW target {TARGET_EAGER_OVER_ORT:g}x"
    print(f"  ratio torch eager / ORT fp32 (median): {eager_over_ort:.2f}x  [{verdict}]")
    print(f"  ratio ORT fp32 / ORT INT8   (median): {fp32_over_int8:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
