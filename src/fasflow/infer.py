"""Single-image inference with an exported model: detect the face, crop, preprocess, score.

Preprocessing is the evaluation pipeline's, step for step: fasflow.faces.crop_face with the
face cache's margin and size, then fasflow.data.eval_transform at the model's input size.
Those three numbers come from the ONNX file's metadata (written by fasflow.export), and
nothing in the file is trusted: metadata types, the input and the output shapes are checked
before the first image, with an error that names the file.

Every prediction carries its cost per stage (decode, face detection, crop, preprocessing,
inference), and the Predictor records the one-time model load, so a user knows what a call
costs end to end.
"""

from __future__ import annotations

import functools
import math
import re
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import DECISION_THRESHOLD
from .errors import DataError, FasflowError

# torch, torchvision and onnx load inside the functions that need them: `fasflow --help` and
# every other subcommand build this module's CLI options without paying for them.

Box = tuple[float, float, float, float]  # x, y, w, h in pixels

ENGINES = ("onnxruntime", "openvino")
# PIL's own default: a larger image is a possible decompression bomb (it warns above this
# and refuses above twice this; fasflow predict refuses both).
DEFAULT_MAX_PIXELS = 89_478_485
STAGES = ("decode", "locate", "crop", "preprocess", "inference")


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
    timings_ms: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Images and boxes


@contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """PIL's decompression-bomb limit set to `max_pixels` for the block, its warning made an error."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = int(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image fully (not lazily), or say plainly why not.

    An image of more than `max_pixels` pixels is refused before it is decoded, as a possible
    decompression bomb (a small file that expands to gigabytes): PIL checks the size in the
    header, and both its warning range (above the limit) and its error range (above twice
    the limit) are refusals here.
    """
    path = Path(path)
    if not path.exists():
        raise ImageRejected(f"{path}: no such file")
    if path.is_dir():
        raise ImageRejected(f"{path}: is a directory, not an image")
    try:
        with pixel_limit(max_pixels), Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(
            f"{path}: refused as a possible decompression bomb ({exc}); raise --max-pixels (now {max_pixels}) if the image is genuine"
        ) from None
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


# ---------------------------------------------------------------------------
# What a model file must hold


@dataclass(frozen=True)
class ModelContract:
    """The preprocessing recorded in a model file, checked."""

    input_size: int
    face_margin: float
    face_size: int


def _int_value(path: Path, key: str, text: str) -> int:
    if not re.fullmatch(r"\s*\d+\s*", text):
        raise DataError(f"{path}: metadata fasflow.{key} must be a whole number, got {text!r}")
    return int(text)


def parse_metadata(path: str | Path, meta: dict[str, str]) -> ModelContract:
    """input_size (int > 0), face_margin (finite float >= 0), face_size (int >= input_size), or DataError."""
    from .export import REQUIRED_METADATA

    path = Path(path)
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise DataError(
            f"{path}: lacks the fasflow metadata {missing} (export it with "
            f"`snakemake onnx`, which records the preprocessing in the file)"
        )
    input_size = _int_value(path, "input_size", meta["input_size"])
    if input_size < 1:
        raise DataError(f"{path}: metadata fasflow.input_size must be > 0, got {input_size}")
    try:
        face_margin = float(meta["face_margin"])
    except ValueError:
        raise DataError(f"{path}: metadata fasflow.face_margin must be a number, got {meta['face_margin']!r}") from None
    if not math.isfinite(face_margin) or face_margin < 0:
        raise DataError(f"{path}: metadata fasflow.face_margin must be a finite number >= 0, got {meta['face_margin']!r}")
    face_size = _int_value(path, "face_size", meta["face_size"])
    if face_size < input_size:
        raise DataError(f"{path}: metadata fasflow.face_size ({face_size}) must be >= fasflow.input_size ({input_size})")
    return ModelContract(input_size, face_margin, face_size)


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output as an engine reports it; None marks a dynamic dimension."""

    name: str
    element_type: str
    shape: tuple[int | None, ...] | None  # None: rank unknown


def _shape_text(shape) -> str:
    return "unknown" if shape is None else "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def check_io(path: str | Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], input_size: int) -> None:
    """The graph must take one float NCHW batch of 3 x S x S (S = input_size or dynamic) and give N x 2 logits."""
    from .export import CLASS_NAMES

    path = Path(path)
    if len(inputs) != 1:
        raise DataError(f"{path}: expected one input (an NCHW image batch), the model has {len(inputs)}")
    (x,) = inputs
    if x.element_type != "float32":
        raise DataError(f"{path}: input {x.name!r} must be float32, got {x.element_type}")
    want = f"(N, 3, {input_size}, {input_size})"
    if x.shape is None or len(x.shape) != 4:
        raise DataError(f"{path}: input {x.name!r} must have shape {want}, got {_shape_text(x.shape)}")
    batch, channels, height, width = x.shape
    if batch not in (None, 1) or channels != 3 or any(d not in (None, input_size) for d in (height, width)):
        raise DataError(
            f"{path}: input {x.name!r} must have shape {want} (batch 1 or dynamic; the size recorded in fasflow.input_size "
            f"or dynamic), got {_shape_text(x.shape)}"
        )
    if not outputs:
        raise DataError(f"{path}: the model has no output")
    y = outputs[0]
    if y.element_type != "float32":
        raise DataError(f"{path}: output {y.name!r} must be float32 logits, got {y.element_type}")
    if y.shape is None or len(y.shape) != 2 or y.shape[0] not in (None, 1) or y.shape[1] != len(CLASS_NAMES):
        raise DataError(f"{path}: output {y.name!r} must have shape (N, {len(CLASS_NAMES)}) (live, spoof logits), got {_shape_text(y.shape)}")


_ORT_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16", "tensor(uint8)": "uint8", "tensor(int64)": "int64"}


def _ort_specs(args) -> list[TensorSpec]:
    specs = []
    for a in args:
        shape = None if a.shape is None else tuple(d if isinstance(d, int) and d >= 0 else None for d in a.shape)
        specs.append(TensorSpec(a.name, _ORT_TYPES.get(a.type, a.type), shape))
    return specs


def _openvino_specs(ports) -> list[TensorSpec]:
    specs = []
    for p in ports:
        pshape = p.get_partial_shape()
        shape = None if pshape.rank.is_dynamic else tuple(d.get_length() if d.is_static else None for d in pshape)
        specs.append(TensorSpec(p.get_any_name(), p.get_element_type().to_dtype().name, shape))
    return specs


# ---------------------------------------------------------------------------
# The predictor


class Predictor:
    """An exported model plus the preprocessing recorded inside it, checked before use."""

    def __init__(self, model_path: str | Path, threads: int = 1, engine: str = "onnxruntime", threshold: float = DECISION_THRESHOLD) -> None:
        # The load time includes the imports: in a fresh `fasflow predict` process the first model
        # pays for loading torch and the engine, and that is part of what one call costs.
        started = time.perf_counter()
        from .data import eval_transform
        from .export import open_session, read_metadata

        self.model_path = Path(model_path)
        if engine not in ENGINES:
            raise FasflowError(f"unknown engine {engine!r}; choose from {list(ENGINES)}")
        if int(threads) < 1:
            raise FasflowError(f"threads must be >= 1, got {threads}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise FasflowError(f"threshold must be in [0, 1], got {threshold}")
        if not self.model_path.is_file():
            raise FasflowError(f"model {self.model_path} not found (build it with `snakemake onnx`)")
        try:
            meta = read_metadata(self.model_path)
        except Exception as exc:  # onnx raises DecodeError and others for non-ONNX files
            raise DataError(f"{self.model_path}: not an ONNX model ({exc})") from exc
        contract = parse_metadata(self.model_path, meta)
        self.input_size, self.face_margin, self.face_size = contract.input_size, contract.face_margin, contract.face_size
        self.metadata = meta
        self.engine, self.threads, self.threshold = engine, int(threads), float(threshold)
        if engine == "onnxruntime":
            session = open_session(self.model_path, self.threads)
            check_io(self.model_path, _ort_specs(session.get_inputs()), _ort_specs(session.get_outputs()), self.input_size)
            input_name = session.get_inputs()[0].name
            self._run = lambda tensor: session.run(None, {input_name: tensor})[0]
        else:
            from .latency import openvino_compile

            compiled = openvino_compile(self.model_path, self.threads, None, None)
            check_io(self.model_path, _openvino_specs(compiled.inputs), _openvino_specs(compiled.outputs), self.input_size)
            request = compiled.create_infer_request()
            self._run = lambda tensor: request.infer({0: tensor})[0]
        self.transform = eval_transform(self.input_size)
        self.load_ms = (time.perf_counter() - started) * 1e3

    def preprocess(self, image: Image.Image, box: Box | None) -> np.ndarray:
        """(1, 3, S, S) float32: the evaluation tensor of this image and pixel box."""
        return self.tensor(self.crop(image, box))

    def crop(self, image: Image.Image, box: Box | None) -> np.ndarray:
        from .faces import crop_face

        # A writable copy: PIL's array view is read-only and torch warns about it.
        return np.array(crop_face(image, box, self.face_margin, self.face_size))

    def crop_file(self, path: str | Path, image: Image.Image, box: Box | None) -> np.ndarray:
        """The face of `path` exactly as the face cache crops it: large JPEGs are decoded again at
        reduced scale (fasflow.faces.decode_face), the others cropped from the decoded `image`."""
        from .faces import DRAFT_MIN_PIXELS, decode_face

        if image.width * image.height >= DRAFT_MIN_PIXELS:
            return np.array(decode_face(path, box, self.face_margin, self.face_size)[0])
        return self.crop(image, box)

    def tensor(self, face: np.ndarray) -> np.ndarray:
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

    def predict(self, path: str | Path, box_file: str | Path | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Prediction:
        """Score one image; `timings_ms` holds the milliseconds of each stage and their total."""
        from .export import CLASS_NAMES, softmax_spoof

        clock = _Stopwatch()
        image = clock.time("decode", read_image, path, max_pixels)
        box, source = clock.time("locate", self.locate, path, image, box_file)
        face = clock.time("crop", self.crop_file, path, image, box)
        tensor = clock.time("preprocess", self.tensor, face)
        logits = clock.time("inference", self._run, tensor)
        p_spoof = float(softmax_spoof(np.asarray(logits))[0])
        timings = clock.laps | {"total": sum(clock.laps.values())}
        return Prediction(
            path=str(path),
            label=CLASS_NAMES[int(p_spoof >= self.threshold)],
            spoof_probability=p_spoof,
            box=[round(v, 2) for v in box],
            box_source=source,
            inference_ms=timings["inference"],
            timings_ms=timings,
        )


class _Stopwatch:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}

    def time(self, stage: str, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.laps[stage] = (time.perf_counter() - start) * 1e3


def timing_summary(predictions: Sequence[Prediction], load_ms: float) -> dict:
    """Median milliseconds per stage over the scored images, plus the one-time model load."""
    out: dict = {"model_load_ms": load_ms, "images_scored": len(predictions)}
    if predictions:
        for stage in (*STAGES, "total"):
            out[f"median_{stage}_ms"] = float(np.median([p.timings_ms[stage] for p in predictions]))
    return out


def prediction_dict(prediction: Prediction) -> dict:
    return asdict(prediction)
