"""`fasflow predict IMAGE... --model MODEL.onnx`: live/spoof for single images."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """\
The face is found with OpenCV's bundled Haar cascade (offline), unless --box gives the
CelebA-Spoof box file of the image or --celeba-box takes the one next to it. Crop and
preprocessing are the evaluation pipeline's, read from the model's metadata.
Exit status: 0 when every image was scored; 1 when any image could not be scored (each
gets a message, the others are still printed); 2 for a bad model or bad arguments.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="score images as live or spoof with an exported ONNX model",
        description="Detect the face in each image, crop and preprocess it as evaluation does, "
        "and print the label, P(spoof), the face box and the inference time.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (jpg, png, ...)")
    parser.add_argument("--model", required=True, help="exported model, e.g. results/onnx/S0.onnx")
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
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import FasflowError
    from ..infer import ImageRejected, Predictor, prediction_dict

    boxes = args.box or []
    if boxes and len(boxes) != len(args.images):
        raise FasflowError(f"{len(boxes)} --box file(s) for {len(args.images)} image(s): give one per image")
    if args.celeba_box:
        boxes = [str(Path(p).with_name(Path(p).stem + "_BB.txt")) for p in args.images]
    predictor = Predictor(args.model, threads=args.threads)

    results, failures = [], 0
    for i, path in enumerate(args.images):
        try:
            prediction = prediction_dict(predictor.predict(path, boxes[i] if boxes else None))
        except ImageRejected as exc:
            failures += 1
            results.append({"path": path, "error": str(exc)})
            if not args.json:
                print(f"fasflow predict: {exc}", file=sys.stderr)
            continue
        results.append(prediction)
        if not args.json:
            box = ", ".join(f"{v:g}" for v in prediction["box"])
            print(
                f"{path}: {prediction['label'].upper()}  P(spoof)={prediction['spoof_probability']:.4f}  "
                f"face box (x, y, w, h)=({box}) [{prediction['box_source']}]  "
                f"{prediction['inference_ms']:.2f} ms"
            )
    if args.json:
        json.dump({"model": str(args.model), "predictions": results}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    scored = len(results) - failures
    if scored == 0:
        print(f"fasflow predict: none of the {len(results)} image(s) could be scored", file=sys.stderr)
    return 1 if failures else 0
