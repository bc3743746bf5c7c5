"""Face crops: one function used by the cache, evaluation and the inference CLI alike."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from .errors import DataError

BOX_FRAME = 224  # CelebA-Spoof boxes are given in the frame of the image resized to 224x224


def box_to_pixels(box224: tuple[float, float, float, float], width: int, height: int) -> tuple[float, ...]:
    """Convert an (x, y, w, h) box from the 224x224 frame to pixels of a width x height image."""
    x, y, w, h = box224
    sx, sy = width / BOX_FRAME, height / BOX_FRAME
    return (x * sx, y * sy, w * sx, h * sy)


def square_crop_box(
    box: tuple[float, float, float, float] | None, width: int, height: int, margin: float
) -> tuple[int, int, int, int]:
    """Square box around `box` (pixels, x y w h) enlarged by `margin` per side, clamped to the image.

    Returns integer (left, top, right, bottom). Without a box, the whole image.
    """
    if box is None:
        return (0, 0, width, height)
    x, y, w, h = box
    cx, cy = x + w / 2.0, y + h / 2.0
    side = max(w, h) * (1.0 + 2.0 * margin)
    left = max(0, math.floor(cx - side / 2.0))
    top = max(0, math.floor(cy - side / 2.0))
    right = min(width, math.ceil(cx + side / 2.0))
    bottom = min(height, math.ceil(cy + side / 2.0))
    if right - left < 1 or bottom - top < 1:
        return (0, 0, width, height)
    return (left, top, right, bottom)


def crop_face(
    image: Image.Image, box: tuple[float, float, float, float] | None, margin: float, size: int
) -> np.ndarray:
    """Crop the (pixel) box with margin, resize to size x size; uint8 HxWx3 RGB."""
    image = image.convert("RGB")
    crop = square_crop_box(box, image.width, image.height, margin)
    face = image.resize((size, size), Image.Resampling.BILINEAR, box=crop)
    return np.asarray(face, dtype=np.uint8)


def _box_of(row: dict) -> tuple[float, float, float, float] | None:
    if row.get("box_x") is None or row.get("box_w") is None:
        return None
    return (row["box_x"], row["box_y"], row["box_w"], row["box_h"])


def build_face_cache(
    manifest: pl.DataFrame, root: str | Path, margin: float, size: int, threads: int = 1
) -> np.ndarray:
    """Crop every image of `manifest` (in order) into one uint8 array (N, size, size, 3).

    Boxes are the pixel boxes written by ingest; rows without a box use the whole image
    (ingest already applied the configured policy for missing boxes).
    """
    root = Path(root)
    rows = manifest.select("path", "box_x", "box_y", "box_w", "box_h").to_dicts()
    out = np.empty((len(rows), size, size, 3), dtype=np.uint8)

    def work(i: int) -> None:
        path = root / rows[i]["path"]
        try:
            with Image.open(path) as image:
                out[i] = crop_face(image, _box_of(rows[i]), margin, size)
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"cannot decode image {path}: {exc}") from exc

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(work, range(len(rows))))
    return out
