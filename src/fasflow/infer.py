"""Single-image inference with an exported model: detect the face, crop, preprocess, score.

Preprocessing is the evaluation pipeline's, step for step: fasflow.faces.crop_face with the
face cache's margin and size, then fasflow.data.eval_transform at the model's input size.
Those three numbers come from the ONNX file's metadata (written by fasflow.export).
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .data import eval_transform
from .errors import DataError, FasflowError
from .export import CLASS_NAMES, REQUIRED_METADATA, open_session, read_metadata, softmax_spoof
from .faces import crop_face

Box = tuple[float, float, float, float]  # x, y, w, h in pixels


class ImageRejected(FasflowError):
    """One image that cannot be scored (the others still are)."""


@dataclass
class Prediction:
    path: str
    label: str
    spoof_probability: float
    box: list[float]
    box_source: str
    inference_ms: float


def read_image(path: str | Path) -> Image.Image:
    """Decode an image fully (not lazily), or say plainly why not."""
    path = Path(path)
    if not path.exists():
        raise ImageRejected(f"{path}: no such file")
    if path.is_dir():
        raise ImageRejected(f"{path}: is a directory, not an image")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise ImageRejected(f"{path}: not an image file (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"{path}: unreadable image ({exc})") from None


def read_box_file(path: str | Path, width: int, height: int) -> Box:
    """A CelebA-Spoof _BB.txt ('x y w h score' in the 224x224 frame) as a pixel box.

    Uses ingest's parser and conversion, so the box is the one the face cache used.
    """
    from .ingest import box_in_pixels, parse_box

    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise ImageRejected(f"{path}: cannot read box file ({exc.strerror or exc})") from None
    box224 = parse_box(text)
    if box224 is None:
        raise ImageRejected(f"{path}: not a box file (expected 'x y w h score' numbers)")
    pixels = box_in_pixels(box224, width, height)
    if pixels is None:
        raise ImageRejected(f"{path}: box {box224[:4]} has no area inside the {width}x{height} image")
    return pixels


@functools.lru_cache(maxsize=1)
def _cascade():
    import cv2

    cascade_path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(cascade_path))
    if cascade.empty():
        raise FasflowError(f"OpenCV's face cascade is missing ({cascade_path}); reinstall opencv-python-headless 4.x")
    return cascade


def detect_faces(image: Image.Image, min_face_fraction: float = 0.1) -> list[Box]:
    """Frontal faces found by OpenCV's bundled Haar cascade (works offline), largest first."""
    import cv2

    gray = cv2.equalizeHist(np.asarray(image.convert("L"), dtype=np.uint8))
    min_side = max(24, int(min(image.size) * min_face_fraction))
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    boxes = [tuple(float(v) for v in box) for box in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


class Predictor:
    """An exported model plus the preprocessing recorded inside it."""

    def __init__(self, model_path: str | Path, threads: int | None = None) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FasflowError(f"model {self.model_path} not found (build it with `snakemake onnx`)")
        try:
            meta = read_metadata(self.model_path)
        except Exception as exc:  # onnx raises DecodeError and others for non-ONNX files
            raise DataError(f"{self.model_path}: not an ONNX model ({exc})") from exc
        missing = [k for k in REQUIRED_METADATA if k not in meta]
        if missing:
            raise DataError(
                f"{self.model_path}: lacks the fasflow metadata {missing} (export it with "
                f"`snakemake onnx`, which records the preprocessing in the file)"
            )
        self.input_size = int(meta["input_size"])
        self.face_margin = float(meta["face_margin"])
        self.face_size = int(meta["face_size"])
        self.metadata = meta
        self.session = open_session(self.model_path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.transform = eval_transform(self.input_size)

    def preprocess(self, image: Image.Image, box: Box | None) -> np.ndarray:
        """(1, 3, S, S) float32: the evaluation tensor of this image and pixel box."""
        # A writable copy: PIL's array view is read-only and torch warns about it.
        face = np.array(crop_face(image, box, self.face_margin, self.face_size))
        return self.transform(face).unsqueeze(0).numpy()

    def locate(self, path: str | Path, image: Image.Image, box_file: str | Path | None) -> tuple[Box, str]:
        if box_file is not None:
            return read_box_file(box_file, image.width, image.height), "bb_file"
        faces = detect_faces(image)
        if not faces:
            raise ImageRejected(f"{path}: no face found (give the face box with --box FILE_BB.txt)")
        if len(faces) > 1:
            raise ImageRejected(
                f"{path}: {len(faces)} faces found; crop the image to one face or give its box with --box"
            )
        return faces[0], "detector"

    def predict(self, path: str | Path, box_file: str | Path | None = None) -> Prediction:
        image = read_image(path)
        box, source = self.locate(path, image, box_file)
        tensor = self.preprocess(image, box)
        start = time.perf_counter()
        logits = self.session.run(None, {self.input_name: tensor})[0]
        elapsed_ms = (time.perf_counter() - start) * 1e3
        p_spoof = float(softmax_spoof(logits)[0])
        return Prediction(
            path=str(path),
            label=CLASS_NAMES[int(p_spoof >= 0.5)],
            spoof_probability=p_spoof,
            box=[round(v, 2) for v in box],
            box_source=source,
            inference_ms=elapsed_ms,
        )


def prediction_dict(prediction: Prediction) -> dict:
    return asdict(prediction)
