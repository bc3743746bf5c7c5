"""The student zoo's candidates on this CPU: does each timm architecture export to ONNX with the
TorchScript exporter, pass the parity check, quantise to static QDQ INT8 and run in ONNX Runtime,
and what do parameters, file size, batch-1 latency (FP32 and INT8, 1 thread, 224 px) and training
throughput at the demo size (48 px) look like next to MobileNetV2, all measured in one run.

No target: the output says which architectures the `students` config key can use (config/README.md)
and what each costs relative to mobilenetv2_100 (the paper's student).
Usage: python benchmarks/bench_zoo.py [--runs 30] [--warmup 5] [ARCH ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fasflow.export import export_onnx, open_session, parity  # noqa: E402
from fasflow.latency import summarize, time_calls  # noqa: E402
from fasflow.models import count_parameters, create_model  # noqa: E402
from fasflow.quantize import quantize_int8  # noqa: E402

REFERENCE = "mobilenetv2_100"
CANDIDATES = (
    REFERENCE,
    "mobilenetv3_large_100",
    "mobilenetv3_small_100",
    "efficientnet_lite0",
    "ghostnet_100",
    "lcnet_100",
    "mobilenetv4_conv_small",
    "repvit_m0_9",
    "mobilevit_xxs",
    "fastvit_t8",
    "efficientvit_b0",
)
DEPLOY_SIZE, DEMO_SIZE, DEMO_BATCH = 224, 48, 32


def smooth_faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Upsampled noise: stands in for faces (latency and export do not depend on content)."""
    coarse = np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    return np.kron(coarse, np.ones((1, size // 8, size // 8, 1), dtype=np.uint8))


def train_images_per_s(arch: str, steps: int = 6) -> float:
    """Forward + backward + AdamW step at the demo's input size and batch (images/s)."""
    torch.manual_seed(0)
    model = create_model(arch, dropout=0.2).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(DEMO_BATCH, 3, DEMO_SIZE, DEMO_SIZE), torch.randint(0, 2, (DEMO_BATCH,))
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return DEMO_BATCH * steps / (time.perf_counter() - start)


def check(arch: str, work: Path, warmup: int, runs: int) -> dict:
    out: dict = {"arch": arch}
    torch.manual_seed(0)
    model = create_model(arch, dropout=0.2).eval()
    out["params_m"] = count_parameters(model) / 1e6
    faces = smooth_faces(16, DEPLOY_SIZE)
    fp32, int8 = work / f"{arch}.onnx", work / f"{arch}.int8.onnx"
    info = export_onnx(model, fp32, DEPLOY_SIZE, metadata={"input_size": DEPLOY_SIZE})
    out["onnx_mib"] = info["size_mib"]
    result = parity(model, open_session(fp32), faces, DEPLOY_SIZE)
    out["parity_max_abs"] = result["max_abs_logit_diff"]
    out["parity_passed"] = result["passed"]
    quantize_int8(fp32, int8, faces, DEPLOY_SIZE)
    sessions = {"fp32": open_session(fp32, threads=1), "int8": open_session(int8, threads=1)}
    x = np.random.default_rng(0).standard_normal((1, 3, DEPLOY_SIZE, DEPLOY_SIZE)).astype(np.float32)
    logits = {k: s.run(None, {s.get_inputs()[0].name: x})[0] for k, s in sessions.items()}
    out["int8_runs"] = bool(np.isfinite(logits["int8"]).all())
    out["int8_mib"] = int8.stat().st_size / 2**20
    for name, session in sessions.items():
        feed = {session.get_inputs()[0].name: x}
        out[f"{name}_median_ms"] = summarize(time_calls(lambda: session.run(None, feed), warmup, runs))["median_ms"]
    out["train_img_s"] = train_images_per_s(arch)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("archs", nargs="*", default=list(CANDIDATES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, failed = [], {}
    with tempfile.TemporaryDirectory(prefix="fasflow-zoo-") as work:
        for arch in args.archs:
            try:
                rows.append(check(arch, Path(work), args.warmup, args.runs))
            except Exception as exc:  # any failure is the finding: report it and go on
                failed[arch] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
                traceback.print_exc(limit=2)
            print(f"  done {arch}", flush=True)
    ref = next((r for r in rows if r["arch"] == REFERENCE), None)
    print(f"bench_zoo: 1 thread, batch 1 at {DEPLOY_SIZE} px (ORT, {args.runs} runs after {args.warmup}); "
          f"training at {DEMO_SIZE} px, batch {DEMO_BATCH}; ratios are to {REFERENCE}")
    print(f"  {'arch':24s} {'params M':>8s} {'ONNX MiB':>8s} {'INT8 MiB':>8s} {'parity':>8s} "
          f"{'FP32 ms':>8s} {'INT8 ms':>8s} {'FP32/INT8':>9s} {'FP32 vs ref':>11s} {'train img/s':>11s} {'vs ref':>6s}")
    for r in rows:
        rel = r["fp32_median_ms"] / ref["fp32_median_ms"] if ref else float("nan")
        train_rel = r["train_img_s"] / ref["train_img_s"] if ref else float("nan")
        print(f"  {r['arch']:24s} {r['params_m']:8.2f} {r['onnx_mib']:8.2f} {r['int8_mib']:8.2f} "
              f"{'ok' if r['parity_passed'] else 'FAIL':>8s} {r['fp32_median_ms']:8.2f} {r['int8_median_ms']:8.2f} "
              f"{r['fp32_median_ms'] / r['int8_median_ms']:9.2f} {rel:10.2f}x {r['train_img_s']:11.0f} {train_rel:5.2f}x")
    for arch, reason in failed.items():
        print(f"  {arch:24s} FAILED: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
