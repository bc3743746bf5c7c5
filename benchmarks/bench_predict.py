"""What one `fasflow predict` call costs, end to end, on photos of realistic sizes.

A 640x480 and a 3000x4000 JPEG, each holding one face (a real photograph shipped with
matplotlib, scaled), scored by mobilenetv2_100 exported at 224 px (FP32 and INT8) in ONNX Runtime
and OpenVINO: median milliseconds of decoding, face detection, crop, preprocessing and inference,
and the one-time model load; then one whole command in a fresh process (interpreter, imports,
model load, one image), which is what a user waits for.
Usage: python benchmarks/bench_predict.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.cbook
import numpy as np
import torch
from PIL import Image

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from fasflow.export import export_onnx  # noqa: E402
from fasflow.infer import STAGES, Predictor  # noqa: E402
from fasflow.latency import cpu_model  # noqa: E402
from fasflow.models import create_model  # noqa: E402
from fasflow.quantize import quantize_int8  # noqa: E402
from fasflow.seeding import set_threads  # noqa: E402

SIZES = ((640, 480), (3000, 4000))
INPUT_SIZE, FACE_SIZE, MARGIN = 224, 256, 0.2


def photo(path: Path, width: int, height: int) -> Path:
    """A JPEG of width x height with one face covering about 40% of the shorter side."""
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        face = Image.open(fh).convert("RGB")
    canvas = Image.new("RGB", (width, height), (120, 130, 140))
    side = int(min(width, height) * 0.6)
    face = face.resize((side, int(side * face.height / face.width)))
    canvas.paste(face, ((width - face.width) // 2, (height - face.height) // 2))
    canvas.save(path, quality=92)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    set_threads(args.threads)  # as `fasflow predict` does: preprocessing gets the inference threads
    torch.manual_seed(0)
    model = create_model("mobilenetv2_100").eval()
    meta = {"input_size": INPUT_SIZE, "face_margin": MARGIN, "face_size": FACE_SIZE}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        fp32, int8 = work / "m.onnx", work / "m.int8.onnx"
        export_onnx(model, fp32, INPUT_SIZE, metadata=meta)
        coarse = np.random.default_rng(0).integers(0, 256, size=(16, 8, 8, 3), dtype=np.uint8)
        quantize_int8(fp32, int8, np.kron(coarse, np.ones((1, FACE_SIZE // 8, FACE_SIZE // 8, 1), np.uint8)), INPUT_SIZE)
        photos = {f"{w}x{h}": photo(work / f"{w}x{h}.jpg", w, h) for w, h in SIZES}
        print(f"bench_predict: mobilenetv2_100 at {INPUT_SIZE} px, {args.threads} thread(s), median of {args.repeats}; {cpu_model()}")
        print(f"  {'engine':24s} {'photo':10s} {'load':>7s} " + " ".join(f"{s:>10s}" for s in (*STAGES, "total")) + "   (ms)")
        for engine in ("onnxruntime", "openvino"):
            for label, path in (("FP32", fp32), ("INT8", int8)):
                loads = []
                for _ in range(3):
                    predictor = Predictor(path, threads=args.threads, engine=engine)
                    loads.append(predictor.load_ms)
                for name, image in photos.items():
                    runs = [predictor.predict(image) for _ in range(args.repeats + 1)][1:]  # the first call warms caches
                    medians = {s: float(np.median([r.timings_ms[s] for r in runs])) for s in (*STAGES, "total")}
                    print(
                        f"  {engine + ' ' + label:24s} {name:10s} {np.median(loads):7.1f} "
                        + " ".join(f"{medians[s]:10.2f}" for s in (*STAGES, "total"))
                    )
        # One whole command in a fresh process: interpreter start, imports, model load, one image.
        for engine in ("onnxruntime", "openvino"):
            command = [sys.executable, "-m", "fasflow", "predict", str(photos["640x480"]), "--model", str(int8), "--json", "--engine", engine]
            walls, reported = [], []
            for _ in range(3):
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, check=True)
                walls.append((time.perf_counter() - start) * 1e3)
                document = json.loads(done.stdout)
                reported.append(document["timing"])
            print(
                f"  one `fasflow predict` of the 640x480 photo, INT8, {engine}: {np.median(walls):.0f} ms for the process; "
                f"it reports {np.median([t['command_ms'] for t in reported]):.0f} ms for the command, of which model load "
                f"{np.median([t['model_load_ms'] for t in reported]):.0f} ms and the image {np.median([t['median_total_ms'] for t in reported]):.0f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
