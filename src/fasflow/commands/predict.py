"""`fasflow predict IMAGE... --model MODEL.onnx`: live/spoof for single images, and what each costs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import DECISION_THRESHOLD

EPILOG = """\
The face is found with OpenCV's bundled Haar cascade (offline), unless --box gives the
CelebA-Spoof box file of the image or --celeba-box takes the one next to it. Crop and
preprocessing are the evaluation pipeline's, read from the model's metadata, which is
checked (with the model's input and output shapes) before the first image.
Timing: each image's milliseconds per stage (decode, face detection or box file, crop,
preprocessing, inference), the one-time model load (with the engine's imports) and the whole
command; --json gives all of them.
An image larger than --max-pixels is refused as a possible decompression bomb.
Exit status: 0 when every image was scored; 1 when any image could not be scored (each
gets a message, the others are still printed); 2 for a bad model or bad arguments.
"""


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse turns the ValueError into exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value}")
    return value


def probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def register(subparsers) -> None:
    from ..infer import DEFAULT_MAX_PIXELS, ENGINES

    parser = subparsers.add_parser(
        "predict",
        help="score images as live or spoof with an exported ONNX model",
        description="Detect the face in each image, crop and preprocess it as evaluation does, "
        "and print the label, P(spoof), the face box and the time each step took.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (jpg, png, ...)")
    parser.add_argument("--model", required=True, help="exported model, e.g. results/onnx/S0.onnx or results/onnx/S0.int8.onnx")
    boxes = parser.add_mutually_exclusive_group()
    boxes.add_argument(
        "--box",
        action="append",
        metavar="FILE_BB.txt",
        help="CelebA-Spoof box file ('x y w h score' in the 224x224 frame) instead of face "
        "detection; give one --box per IMAGE, in the same order",
    )
    boxes.add_argument(
        "--celeba-box",
        action="store_true",
        help="use the CelebA-Spoof box file next to each image (IMAGE without extension + _BB.txt)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--threads", type=positive_int, default=1, help="inference threads, >= 1 (default 1)")
    parser.add_argument(
        "--threshold", type=probability, default=DECISION_THRESHOLD, help="P(spoof) at or above which an image is called spoof, in [0, 1] (default 0.5, the workflow's)"
    )
    parser.add_argument(
        "--engine", choices=ENGINES, default="onnxruntime", help="inference engine; both read the same ONNX file (default onnxruntime)"
    )
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images with more pixels than this as possible decompression bombs (default {DEFAULT_MAX_PIXELS:,}, PIL's)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()  # the whole command: imports, model load, every image
    from ..errors import FasflowError
    from ..infer import ImageRejected, Predictor, prediction_dict, timing_summary
    from ..seeding import set_threads

    boxes = args.box or []
    if boxes and len(boxes) != len(args.images):
        raise FasflowError(f"{len(boxes)} --box file(s) for {len(args.images)} image(s): give one per image")
    if args.celeba_box:
        boxes = [str(Path(p).with_name(Path(p).stem + "_BB.txt")) for p in args.images]
    predictor = Predictor(args.model, threads=args.threads, engine=args.engine, threshold=args.threshold)
    # Preprocessing runs torch ops: they get the same threads as inference, not every core
    # (on a busy machine a multi-threaded 224 px resize took 10-50x longer than a single-threaded one).
    set_threads(args.threads)

    results, scored = [], []
    for i, path in enumerate(args.images):
        try:
            prediction = predictor.predict(path, boxes[i] if boxes else None, max_pixels=args.max_pixels)
        except ImageRejected as exc:
            results.append({"path": path, "error": str(exc)})
            if not args.json:
                print(f"fasflow predict: {exc}", file=sys.stderr)
            continue
        scored.append(prediction)
        results.append(prediction_dict(prediction))
        if not args.json:
            box = ", ".join(f"{v:g}" for v in prediction.box)
            print(
                f"{path}: {prediction.label.upper()}  P(spoof)={prediction.spoof_probability:.4f}  "
                f"face box (x, y, w, h)=({box}) [{prediction.box_source}]  "
                f"{prediction.timings_ms['total']:.1f} ms"
            )
    timing = timing_summary(scored, predictor.load_ms)
    timing["command_ms"] = (time.perf_counter() - started) * 1e3
    if args.json:
        document = {
            "model": str(args.model),
            "engine": args.engine,
            "threads": args.threads,
            "threshold": args.threshold,
            "timing": timing,
            "predictions": results,
        }
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif scored:
        print(
            f"timing ({args.engine}, {args.threads} thread(s)): {timing['command_ms']:.0f} ms in all (imports, "
            f"model load {timing['model_load_ms']:.0f} ms, {len(results)} image(s)); "
            f"per image (median of {len(scored)}) {timing['median_total_ms']:.1f} ms = decode {timing['median_decode_ms']:.1f} "
            f"+ face {'box' if boxes else 'detection'} {timing['median_locate_ms']:.1f} + crop {timing['median_crop_ms']:.1f} "
            f"+ preprocessing {timing['median_preprocess_ms']:.1f} + inference {timing['median_inference_ms']:.1f}"
        )
    failures = len(results) - len(scored)
    if not scored:
        print(f"fasflow predict: none of the {len(results)} image(s) could be scored", file=sys.stderr)
    return 1 if failures else 0
