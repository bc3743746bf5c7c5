"""Decoding + face cropping of large JPEG photos, with and without reduced-scale decoding.

CelebA-Spoof's spoof photos are often several megapixels, and the face cache shrinks each face
to `faces.size` (256 px in the paper config). Decoding the whole photo only to throw most pixels
away is most of the cache's cost; libjpeg can decode at 1/2, 1/4 or 1/8 scale directly
(`fasflow.faces.decode_face`, PIL's Image.draft) when the crop keeps at least `size` pixels.
Prints images/s both ways and their ratio, measured in one run, one thread.

Entropy (Huffman) decoding cannot be reduced: it scales with the file's bytes, the rest with its
pixels. So the gain depends on bits per pixel; the benchmark runs two kinds of photo:
"typical" (~0.7 bits/pixel, 1.1 MiB at 12 MP: still several times CelebA-Spoof's mean file, 77 GB
/ 625,537 images = 123 KB) and "high-detail" (~2.3 bits/pixel, 3.3 MiB, a worst case).

Target (issue 13): reduced-scale decoding >= 3x faster on large (3000x4000) JPEG photos (typical).
Usage: python benchmarks/bench_decode.py [--quick] [--width 3000 --height 4000] [--size 256] [--photos 6]
       (--quick: 3 photos of 1500x2000; also FASFLOW_BENCH_QUICK=1)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fasflow.faces import decode_face, draft_scale, square_crop_box  # noqa: E402

TARGET_SPEEDUP = 3.0
# Face box sides, as a fraction of the photo's width, and the margin of the paper config.
FACE_WIDTHS = (0.30, 0.40, 0.50)
MARGIN = 0.2
KINDS = {"typical": (2.0, 85), "high-detail": (6.0, 92)}  # sensor noise sigma, JPEG quality


def photo(width: int, height: int, seed: int, noise: float) -> Image.Image:
    """A photo-like image: smooth shading, soft-edged shapes, sensor noise (JPEG cost depends on detail)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 64 + 2, width // 64 + 2, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    detail = rng.normal(0, noise, size=(height, width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(np.asarray(image, np.float32) + detail, 0, 255).astype(np.uint8))


def before_this_issue(path: Path, box: tuple, size: int) -> np.ndarray:
    """The face cache's decoding before issue 13: full decode, a full RGB copy, then crop + resize."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        crop = square_crop_box(box, image.width, image.height, MARGIN)
        return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=crop))


def time_decoding(jobs: list[tuple[Path, tuple]], size: int, repeats: int) -> dict[str, float]:
    """Images per second of each way, interleaved image by image so that load from other
    processes on the machine affects all of them alike (after one warm-up pass)."""
    ways = {
        "before (full decode + RGB copy)": lambda p, b: before_this_issue(p, b, size),
        "full decode": lambda p, b: decode_face(p, b, MARGIN, size, reduce=False),
        "reduced-scale decode": lambda p, b: decode_face(p, b, MARGIN, size, reduce=True),
    }
    spent = dict.fromkeys(ways, 0.0)
    for repeat in range(repeats + 1):
        for path, box in jobs:
            for name, way in ways.items():
                started = time.perf_counter()
                way(path, box)
                if repeat:
                    spent[name] += time.perf_counter() - started
    return {name: repeats * len(jobs) / seconds for name, seconds in spent.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--size", type=int, default=256, help="face cache side (default 256, the paper config's)")
    parser.add_argument("--photos", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    quick = args.quick or os.environ.get("FASFLOW_BENCH_QUICK") == "1"
    width = args.width or (1500 if quick else 3000)
    height = args.height or (2000 if quick else 4000)
    n_photos = args.photos or (3 if quick else 6)

    print(f"bench_decode: {n_photos} JPEG photos of {width}x{height} per kind, faces {FACE_WIDTHS} of the width with margin {MARGIN}, "
          f"cropped to {args.size} px, 1 thread")
    verdict = "MISSED"
    for kind, (noise, quality) in KINDS.items():
        with tempfile.TemporaryDirectory(prefix="fasflow-bench-decode-") as tmp:
            jobs = []
            for i in range(n_photos):
                path = Path(tmp) / f"photo{i}.jpg"
                photo(width, height, i, noise).save(path, quality=quality)
                side = FACE_WIDTHS[i % len(FACE_WIDTHS)] * width
                jobs.append((path, ((width - side) / 2, (height - side) / 2, side, side)))
            megabytes = sum(p.stat().st_size for p, _ in jobs) / n_photos / 2**20
            scales = [draft_scale(square_crop_box(box, width, height, MARGIN), args.size) for _, box in jobs]
            rates = time_decoding(jobs, args.size, repeats=args.repeats)
        bits_per_pixel = megabytes * 2**20 * 8 / (width * height)
        print(f"  {kind}: {megabytes:.2f} MiB per photo ({bits_per_pixel:.2f} bits/pixel, JPEG quality {quality}); "
              f"reductions used {dict(sorted((s, scales.count(s)) for s in set(scales)))}")
        for name, rate in rates.items():
            print(f"    {name:32s} {rate:7.1f} images/s  ({1000 / rate:6.1f} ms/image)")
        reduced = rates["reduced-scale decode"]
        ratio, ratio_before = reduced / rates["full decode"], reduced / rates["before (full decode + RGB copy)"]
        print(f"    speed-up of reduced-scale decoding: {ratio:.2f}x over a full decode, {ratio_before:.2f}x over the code before issue 13")
        if kind == "typical":
            verdict = "OK" if ratio >= TARGET_SPEEDUP else "MISSED"
    print(f"  target >= {TARGET_SPEEDUP:g}x on typical photos: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
