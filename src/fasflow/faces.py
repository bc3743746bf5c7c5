"""Face crops: one function used by the cache, evaluation and the inference CLI alike.

The face cache of a split (`write_face_cache`) is one uint8 array (N, S, S, 3) in a `.npy`
file, written to disk chunk by chunk so that memory does not grow with N, plus the manifest of
the rows it holds (the split manifest less the images that could not be decoded) and a report.
JPEG photos of a megapixel or more are decoded at a reduced scale (`decode_face`) whenever the
face crop keeps at least S pixels per side: decoding multi-megapixel photos only to shrink their
faces is most of the cost at CelebA-Spoof scale.
"""

from __future__ import annotations

import contextlib
import io as _bytes_io
import math
import os
import shutil
import struct
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
from PIL import Image, JpegImagePlugin

from . import io
from .errors import DataError
from .ingest import RootGuard, Tally, exceeds_pixel_limit
from .runlog import get_logger

BOX_FRAME = 224  # CelebA-Spoof boxes are given in the frame of the image resized to 224x224
DRAFT_SCALES = (8, 4, 2)  # the reductions libjpeg decodes directly (DCT scaling)
# Below a megapixel a full decode costs a few ms and a reduced one saves little; such images
# (CelebA's live photos, the synthetic datasets) are decoded exactly, as before.
DRAFT_MIN_PIXELS = 1_000_000
CHUNK_BYTES = 64 * 2**20  # faces decoded per chunk: the step's memory beyond its fixed part
PROGRESS_SECONDS = 15.0  # at most one progress line per this many seconds (and one per chunk at most)
BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")

# What PIL raises on a file that is not a decodable image (besides a missing file).
DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
    Image.DecompressionBombError, Image.DecompressionBombWarning,
)  # fmt: skip


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
    if image.mode != "RGB":  # convert() of an RGB image is a full copy: 36 MB for a 12 MP photo
        image = image.convert("RGB")
    crop = square_crop_box(box, image.width, image.height, margin)
    face = image.resize((size, size), Image.Resampling.BILINEAR, box=crop)
    return np.asarray(face, dtype=np.uint8)


def draft_scale(crop: tuple[int, int, int, int], size: int) -> int:
    """The largest JPEG reduction (8, 4 or 2) that leaves the crop at least `size` pixels per side; else 1."""
    width, height = crop[2] - crop[0], crop[3] - crop[1]
    for scale in DRAFT_SCALES:
        if width >= scale * size and height >= scale * size:
            return scale
    return 1


def decode_face(
    path: str | os.PathLike, box: tuple[float, float, float, float] | None, margin: float, size: int, reduce: bool = True
) -> tuple[np.ndarray, int]:
    """Decode one image file and crop its face: (uint8 size x size x 3, JPEG reduction used).

    `box` is the pixel box of the full-size image (as ingest writes it). With `reduce`, a JPEG of
    at least DRAFT_MIN_PIXELS whose crop keeps at least `size` pixels per side at 1/2, 1/4 or 1/8
    scale is decoded at that scale (libjpeg's DCT scaling, `Image.draft`) and the crop box is
    scaled with it; the result
    differs from a full decode only by the two low-pass filters' rounding. Otherwise the output is
    exactly `crop_face` of the fully decoded image. Raises what PIL raises on a broken file, and
    DecompressionBombError for an image over Image.MAX_IMAGE_PIXELS.
    """
    with Image.open(path) as image:
        width, height = image.size
        if exceeds_pixel_limit(width, height):
            raise Image.DecompressionBombError(f"{width}x{height} pixels exceed Image.MAX_IMAGE_PIXELS ({Image.MAX_IMAGE_PIXELS})")
        crop = square_crop_box(box, width, height, margin)
        # MPO (camera JPEGs with extra frames) is a JpegImageFile too.
        large_jpeg = isinstance(image, JpegImagePlugin.JpegImageFile) and width * height >= DRAFT_MIN_PIXELS
        scale = draft_scale(crop, size) if reduce and large_jpeg else 1
        if scale == 1:
            return crop_face(image, box, margin, size), 1
        drafted = image.draft("RGB", (width // scale, height // scale))
        if drafted is None:  # the decoder declined (e.g. an unusual tile layout): decode fully
            return crop_face(image, box, margin, size), 1
        # draft maps the full image onto (0, 0, width / s, height / s) of the reduced one.
        factor = width / drafted[1][2]
        reduced_crop = tuple(c / factor for c in crop)
        if image.mode != "RGB":
            image = image.convert("RGB")
        face = image.resize((size, size), Image.Resampling.BILINEAR, box=reduced_crop)
        return np.asarray(face, dtype=np.uint8), int(round(factor))


def _box_of(row: dict) -> tuple[float, float, float, float] | None:
    if row.get("box_x") is None or row.get("box_w") is None:
        return None
    return (row["box_x"], row["box_y"], row["box_w"], row["box_h"])


def build_face_cache(
    manifest: pl.DataFrame, root: str | Path, margin: float, size: int, threads: int = 1
) -> np.ndarray:
    """Crop every image of `manifest` (in order) into one in-memory uint8 array (N, size, size, 3).

    For small sets (tests, single checks): the whole array is in memory, every image is decoded
    at full size (as `crop_face` of a fully decoded image, like `fasflow.infer`) and any image
    that cannot be decoded raises DataError. A split's cache is built by `write_face_cache`.
    """
    root = Path(root)
    rows = manifest.select("path", *BOX_COLUMNS).to_dicts()
    out = np.empty((len(rows), size, size, 3), dtype=np.uint8)

    def work(i: int) -> None:
        path = root / rows[i]["path"]
        try:
            out[i] = decode_face(path, _box_of(rows[i]), margin, size, reduce=False)[0]
        except DECODE_ERRORS as exc:
            raise DataError(f"cannot decode image {path}: {exc}") from exc

    with _bomb_warnings_silenced(), ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(work, range(len(rows))))
    return out


# ----------------------------------------------------------------------------- the cache on disk


def npy_header(shape: tuple[int, ...]) -> bytes:
    """The exact header `np.save` writes before a C-ordered uint8 array of `shape`."""
    buffer = _bytes_io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": tuple(int(v) for v in shape)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _header_of_length(shape: tuple[int, ...], length: int) -> bytes:
    """`npy_header(shape)`, padded with spaces to `length` bytes if it is shorter.

    Used when images were skipped: the final shape is known only at the end, and its header may
    be a few characters shorter than the one already written. Extra padding keeps the data where
    it is (still 64-byte aligned); np.load reads the length from the header itself.
    """
    header = npy_header(shape)
    if len(header) == length:
        return header
    if len(header) > length:  # cannot happen for fewer rows, but never write a wrong file
        raise AssertionError(f"npy header for {shape} is longer than the {length} bytes reserved")
    body = header[10:-1] + b" " * (length - len(header))
    return header[:8] + struct.pack("<H", length - 10) + body + b"\n"


def write_face_cache(
    manifest_path: str | os.PathLike,
    root: str | os.PathLike,
    margin: float,
    size: int,
    threads: int,
    policies: dict[str, str],
    faces_out: str | os.PathLike,
    manifest_out: str | os.PathLike,
    report_out: str | os.PathLike,
    chunk_images: int | None = None,
) -> dict:
    """Workflow step: crop every face of a split manifest into `faces_out`, aligned with `manifest_out`.

    Faces are decoded `threads` at a time, one chunk at a time (`chunk_images`, by default as many
    as fit in CHUNK_BYTES), and each chunk is appended to the `.npy` file, so the step's memory is
    bounded by one chunk whatever the number of images. The result is one uint8 array
    (N, size, size, 3), readable with np.load(mmap_mode="r"), byte-identical to np.save of the same
    faces. Images are handled with the ingest policies (`policies`, the `ingest` config section):
    an image that cannot be decoded fully (truncated, corrupt, a decompression bomb) is
    `unreadable_image`, a file gone since ingest `missing_image`, a real path leaving `root`
    `unsafe_path` (never opened). Under `skip` the image is counted in the report and left out of
    both the faces and `manifest_out` (the manifest's rows that were cached, same columns);
    under `fail` a DataError names the file. The three outputs appear together, or none does.
    Returns the report (also written to `report_out` as JSON).
    """
    log = get_logger()
    started = time.perf_counter()
    manifest = pl.read_parquet(manifest_path)
    n = manifest.height
    if n == 0:
        raise DataError(f"{manifest_path} lists no images to cache")
    face_bytes = size * size * 3
    header = npy_header((n, size, size, 3))
    planned = len(header) + n * face_bytes
    chunk = max(1, chunk_images or CHUNK_BYTES // face_bytes)
    _log_disk_needs(log, faces_out, planned, n, size, chunk, face_bytes)

    tally = Tally(policies)
    guard = RootGuard(root)
    kept = np.zeros(n, dtype=bool)
    scales = {1: 0, 2: 0, 4: 0, 8: 0}
    buffer = np.empty((min(chunk, n), size, size, 3), dtype=np.uint8)
    progress = _Progress(log, n, started)

    with contextlib.ExitStack() as outputs:
        tmp_faces = outputs.enter_context(io.atomic_path(faces_out))
        with open(tmp_faces, "wb") as fh, _bomb_warnings_silenced(), ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            fh.write(header)
            fh.flush()
            for offset in range(0, n, chunk):
                rows = manifest.slice(offset, chunk).select("path", *BOX_COLUMNS).rows()

                def work(i: int) -> int | tuple[str, str]:
                    path, *box = rows[i]
                    real = guard.resolve(path)
                    if real is None:
                        return ("unsafe_path", "its real path leaves the dataset root")
                    try:
                        buffer[i], scale = decode_face(real, None if box[0] is None else tuple(box), margin, size)
                    except FileNotFoundError:
                        return ("missing_image", "no such file (deleted since ingest?)")
                    except DECODE_ERRORS as exc:
                        return ("unreadable_image", f"{type(exc).__name__}: {exc}")
                    return scale

                outcomes = list(pool.map(work, range(len(rows))))
                good = [i for i, o in enumerate(outcomes) if isinstance(o, int)]
                for i, outcome in enumerate(outcomes):
                    if isinstance(outcome, tuple):
                        reason, detail = outcome
                        tally.add(reason, [rows[i][0]], detail=f"{Path(root) / rows[i][0]}: {detail}")
                    else:
                        scales[outcome] += 1
                if len(good) == len(rows):
                    fh.write(buffer[: len(rows)].data)
                else:
                    for i in good:
                        fh.write(buffer[i].data)
                fh.flush()  # the chunk leaves this process before the buffer is reused
                kept[offset + np.asarray(good, dtype=np.int64)] = True
                progress.update(offset + len(rows))
            cached = int(kept.sum())
            if cached == 0:
                raise DataError(
                    f"no usable images in {manifest_path}: all {n:,} were left out "
                    f"({dict(sorted(tally.counts.items()))}; see the ingest policies)"
                )
            if cached < n:
                fh.seek(0)
                fh.write(_header_of_length((cached, size, size, 3), len(header)))
                fh.truncate(len(header) + cached * face_bytes)
        seconds = time.perf_counter() - started
        report = {
            "manifest": str(manifest_path),
            "root": str(root),
            "size": size,
            "margin": margin,
            "listed": n,
            "cached": cached,
            "skipped": dict(sorted(tally.counts.items())),
            "examples": {k: v for k, v in sorted(tally.examples.items())},
            "policies": {k: tally.policies[k] for k in ("on_unreadable_image", "on_missing_image", "on_unsafe_path")},
            "whole_image": int(manifest.filter(kept)["box_x"].is_null().sum()),
            "jpeg_reduction": {str(k): v for k, v in scales.items()},
            "bytes": len(header) + cached * face_bytes,
            "seconds": round(seconds, 3),
            "images_per_second": round(n / seconds, 1) if seconds > 0 else None,
            "threads": threads,
            "chunk_images": chunk,
        }
        # The faces file is renamed into place last (leaving the with-block), after its manifest and report.
        io.write_parquet(manifest_out, manifest.filter(kept))
        io.write_json(report_out, report)
    log.info(
        "faces: %d of %d images cached in %.1f s (%.0f images/s); skipped %s; JPEG reductions %s",
        cached, n, seconds, report["images_per_second"] or 0, report["skipped"] or "none", report["jpeg_reduction"],
    )
    return report


class _Progress:
    """Images done, images/s and ETA to the log, at most every PROGRESS_SECONDS."""

    def __init__(self, log, total: int, started: float) -> None:
        self.log, self.total, self.started, self.last = log, total, started, started

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last < PROGRESS_SECONDS and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        self.log.info("faces: %d/%d images (%.1f%%), %.0f images/s, ETA %s", done, self.total, 100.0 * done / self.total, rate, _duration(eta))


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _log_disk_needs(log, faces_out, planned: int, n: int, size: int, chunk: int, face_bytes: int) -> None:
    folder = Path(faces_out).parent
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    log.info(
        "faces: caching %d images at %d px: %s on disk in %s (%s free); decoding %d images per chunk (%s)",
        n, size, _size(planned), folder, _size(free), chunk, _size(chunk * face_bytes),
    )
    if planned > free:
        log.warning("faces: %s needs %s but only %s is free there", faces_out, _size(planned), _size(free))


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024:
            return f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TiB"


@contextlib.contextmanager
def _bomb_warnings_silenced() -> Iterator[None]:
    """Silence PIL's DecompressionBombWarning: `decode_face` refuses such images itself.

    Warning filters are process-wide, so this is entered before worker threads start.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield
