"""A synthetic dataset in CelebA-Spoof's on-disk format, for the demo and the tests.

`generate(root, n_subjects, images_per_subject, seed)` writes::

    <root>/Data/{train,test}/<subject_id>/{live,spoof}/<image_id>.{jpg,png}
    <root>/Data/.../<image_id>_BB.txt             "x y w h score" in the 224x224 frame
    <root>/metas/intra_test/{train,test}_label.json   {"Data/train/...": [44 ints], ...}
    <root>/metas/protocol1/{train,test}_label.json    the official protocols' folders, with
    <root>/metas/protocol2/test_on_{high,middle,low}_quality_device/{train,test}_label.json
                                                  their selection rules applied (see Protocols)
    <root>/SYNTHETIC.json                         the parameters and counts (written last)
    <root>/Data/.fasflow-synthetic                marks the tree as replaceable by a new run

Design, and why:

* **Identity.** Every subject is a simple drawn face with its own skin tone, face shape,
  eye placement, hair colour/style, mouth and clothing, so a model can recognise people.
* **Identity leakage, a planted control (`identity_shortcut`).** In real collections a
  subject's spoof images are often frames of one recording, one device in one room, and so are
  their live images. The strength k in [0, 1] plants that: each image after the first of its
  subject and class repeats that first capture (same scene, pose, light, device and attack
  medium; new sensor noise) with probability k, and independent captures take their class's
  setting (background, colour cast, bezel) with probability (1 + k) / 2, the other class's
  otherwise. A split that puts one subject in train and test then lets a model score well by
  recognising the scene instead of the attack: the leakage an identity-aware split removes.
  k = 0 (the default) removes both: no repeats, and a subject's setting says who, not whether.
  Across subjects both settings come from one distribution: no setting means "spoof" alone.
* **A spoof type with a cue of its own, a planted control (`distinct_cue`).** The 3D mask
  (type 10) shows flattened plastic skin, specular spots and eye holes that no other type
  has, while every print and paper mask shares the halftone (and the masks a cut edge) and
  every screen the moire. A model that never saw 3D masks has little to flag them with; one
  that never saw phones still knows moire from PCs and pads. With `distinct_cue=False` the 3D
  mask is also printed over with the halftone and given a cut-like rim: the print and paper
  mask cues.
* **Attack cues a small CNN can learn**, one family per spoof type (index 40):
  print (1 photo, 2 poster, 3 A4): rotated colour halftone dots, desaturation, paper edge;
  screens (7 PC, 8 pad, 9 phone): coloured moire bands on a fine carrier, lifted blacks,
  a bezel whose size depends on the device; masks (4 face, 5 upper body, 6 region):
  printed texture inside a cut-out with a hard paper/shadow edge, the region mask
  slightly misaligned; 3D mask (10): flattened plastic skin, specular spots, dark eye
  holes. Spoofs are also a little blurrier on average (overlapping ranges).
* **No single pixel statistic separates the classes.** Live and spoof images draw their
  colour cast from the same distribution and each image is rescaled to a target mean
  brightness drawn from the same illumination-dependent distribution for both classes;
  both get the same sensor noise. Cue patterns are sized relative to the face, so they
  survive the face crop being resized to a few dozen pixels.
* **Format.** Image sizes vary per image (default 64-160 px per side, rarely square), the
  face is placed anywhere it fits, boxes are integer boxes in the 224x224 frame
  (``x_px = x * width / 224``) always inside the image. Subjects are numeric strings
  assigned to the official train or test part (about 85/15); train images are JPEG, test
  images PNG, as in CelebA-Spoof. Each subject has about 1 live : 2 spoof images; spoof
  types are dealt from shuffled rounds of all ten, so all ten appear once there are at
  least ten spoof images. Label vector: indices 0-39 face attributes (0/1, some tied to
  the drawing, e.g. hair colour, smiling), 40 spoof type, 41 illumination (1 normal,
  2 strong, 3 back, 4 dark; 0 for live), 42 environment (1 indoor, 2 outdoor; 0 for
  live), 43 label (0 live, 1 spoof).
* **Deterministic.** Each image has its own random stream seeded by (seed, subject,
  image), files are written with fixed encoder settings and no metadata, and everything
  is written in sorted order: the same arguments give byte-identical files. The tree is
  built in a temporary folder and moved into place at the end, so an interrupted run
  leaves no half-written dataset.
* **Protocols.** Besides `intra_test` (every image of the official train/test part), the
  generator writes the cross-domain protocols' folders, following the real ones' rules as far
  as synthetic metadata allows (config/README.md, "Protocols"). Protocol 1 (unseen spoof
  media): train lists official-train live images and spoofs of types 1, 2, 5, 6, 8, 9; test
  lists official-test live images and spoofs of A4 (3), face mask (4) and PC (7); 3D masks
  (10) belong to none of its three families and appear in neither file. Protocol 2 (unseen
  capture-device quality): the label vector holds no device, so each synthetic spoof image is
  dealt a hidden device quality (low, middle, high in shuffled rounds, from its own seeded
  stream); `test_on_X` trains on official-train live images and spoofs of the two other
  qualities and tests on official-test live images and spoofs of quality X. Adding these
  files leaves `intra_test` and every image byte-identical to what the generator wrote before.
* **Messy copies.** `inject_defects` breaks a few chosen files in the ways real partial
  copies are broken (missing images, missing/empty/malformed/non-finite/negative/
  zero-size/outside boxes, a label vector of the wrong length) and says which paths got
  which defect, for the ingest tests.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageFilter

from .errors import ConfigError, DataError
from .io import write_json

BOX_FRAME = 224
MARKER = "SYNTHETIC.json"
DATA_SENTINEL = "Data/.fasflow-synthetic"  # a second mark of a synthetic tree, inside Data/
LABEL_DIR = "metas/intra_test"
PROTOCOL1_TRAIN_TYPES = (1, 2, 5, 6, 8, 9)  # photo, poster, upper-body mask, region mask, pad, phone
PROTOCOL1_TEST_TYPES = (3, 4, 7)  # A4, face mask, PC: one unseen medium per family
DEVICE_QUALITIES = ("low", "middle", "high")
LABEL_LEN = 44
JPEG_QUALITY = 92
PNG_COMPRESS_LEVEL = 6

PRINT_TYPES = (1, 2, 3)
MASK_TYPES = (4, 5, 6)
SCREEN_TYPES = (7, 8, 9)
MASK3D_TYPE = 10

# Illumination (label index 41) with its probability and the target mean brightness range;
# live images draw a hidden illumination from the same table, so brightness carries no label.
ILLUMINATION = {
    1: (0.50, (95.0, 150.0)),  # normal
    2: (0.20, (140.0, 190.0)),  # strong
    3: (0.15, (100.0, 160.0)),  # back light
    4: (0.15, (50.0, 100.0)),  # dark
}
ENVIRONMENT = {1: 0.7, 2: 0.3}  # indoor, outdoor
FACE_SCALE = (0.45, 0.8)  # face height / the largest that fits, for every image

# Defects that `inject_defects` can make; values are what it writes (None = delete).
DEFECT_KINDS = (
    "missing_image",  # listed in the label file, image file deleted
    "missing_bb",  # _BB.txt deleted
    "empty_bb",  # _BB.txt empty
    "malformed_bb",  # _BB.txt not "x y w h score"
    "nonfinite_bb",  # _BB.txt with nan/inf
    "negative_bb",  # _BB.txt with a negative origin and width
    "zero_size_bb",  # _BB.txt with w = h = 0
    "outside_bb",  # _BB.txt entirely outside the 224x224 frame
    "bad_label",  # label vector of 43 values instead of 44
)

SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 96], [160, 104, 70],
     [120, 76, 50], [90, 58, 40]], dtype=np.float32
)  # fmt: skip
HAIR_COLOURS = {  # name: (rgb, CelebA attribute index or None)
    "black": ((25, 20, 20), 8),
    "blond": ((215, 180, 110), 9),
    "brown": ((110, 70, 40), 11),
    "gray": ((165, 165, 165), 17),
    "red": ((150, 60, 30), None),
}
HAIR_NAMES = sorted(HAIR_COLOURS)
ATTR_SMILING, ATTR_MOUTH_OPEN, ATTR_OVAL, ATTR_BANGS, ATTR_MALE = 31, 21, 25, 5, 20


@dataclass(frozen=True)
class Setting:
    """A capture setting: background and colour cast (and, for devices, bezel colour)."""

    bg_kind: str
    bg_colours: tuple[tuple[float, float, float], tuple[float, float, float]]
    bg_period: float
    bg_angle: float
    cast: tuple[float, float, float]
    bezel: tuple[float, float, float]


@dataclass(frozen=True)
class Subject:
    """The fixed appearance of one synthetic person and their two capture settings."""

    subject_id: str
    official_split: str
    skin: tuple[float, float, float]
    aspect: float  # face height / width
    eye_y: float  # eye line above the centre, in face half-heights
    eye_dx: float  # eye offset from the centre, in face half-widths
    eye_size: float
    hair: str
    hair_long: bool
    hair_cover: float  # fringe depth, in face half-heights
    mouth_w: float
    lip: tuple[float, float, float]
    clothes: tuple[float, float, float]
    live_setting: Setting
    spoof_setting: Setting
    attributes: tuple[int, ...]  # 40 face attributes


# ----------------------------------------------------------------------------- public API


def generate(
    root: str | os.PathLike,
    n_subjects: int,
    images_per_subject: int,
    seed: int,
    *,
    size_range: tuple[int, int] = (64, 160),
    test_fraction: float = 0.15,
    defects: bool = False,
    identity_shortcut: float = 0.0,
    distinct_cue: bool = True,
    workers: int = 1,
) -> dict:
    """Write a synthetic CelebA-Spoof-format dataset under `root`; return its counts.

    `identity_shortcut` (0-1) and `distinct_cue` set the two planted controls (module docstring).

    `root` must not exist, be empty, or hold an earlier synthetic dataset (recognised by
    its SYNTHETIC.json), which is replaced. `workers` processes render subjects in parallel (the
    output does not depend on their number). With `defects=True`, `inject_defects` breaks
    a few files afterwards and the returned dict lists them under "defects".
    """
    n_subjects, images_per_subject, seed, workers = int(n_subjects), int(images_per_subject), int(seed), int(workers)
    if n_subjects < 1:
        raise ConfigError(f"synthetic dataset: n_subjects must be >= 1, got {n_subjects}")
    if images_per_subject < 2:
        raise ConfigError(
            f"synthetic dataset: images_per_subject must be >= 2 (live and spoof), got {images_per_subject}"
        )
    if seed < 0:
        raise ConfigError(f"synthetic dataset: seed must be >= 0, got {seed}")
    if workers < 1:
        raise ConfigError(f"synthetic dataset: workers must be >= 1, got {workers}")
    lo, hi = (int(v) for v in size_range)
    if not 16 <= lo <= hi:
        raise ConfigError(f"synthetic dataset: size_range must satisfy 16 <= min <= max, got {size_range}")
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"synthetic dataset: test_fraction must be in [0, 1), got {test_fraction}")
    identity_shortcut = float(identity_shortcut)
    if not 0.0 <= identity_shortcut <= 1.0:
        raise ConfigError(f"synthetic dataset: identity_shortcut must be in [0, 1], got {identity_shortcut}")
    distinct_cue = bool(distinct_cue)

    root = Path(root)
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        counts = _write_dataset(
            tmp, n_subjects, images_per_subject, seed, (lo, hi), test_fraction, identity_shortcut, distinct_cue, workers
        )
        params = {
            "n_subjects": n_subjects,
            "images_per_subject": images_per_subject,
            "seed": seed,
            "size_range": [lo, hi],
            "test_fraction": test_fraction,
            "identity_shortcut": identity_shortcut,
            "distinct_cue": distinct_cue,
        }
        write_json(tmp / MARKER, {"generator": "fasflow.synth", "params": params, "counts": counts})
        if defects:
            counts["defects"] = inject_defects(tmp, seed)
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return counts


def inject_defects(
    root: str | os.PathLike, seed: int, kinds: Iterable[str] = DEFECT_KINDS, per_kind: int = 1
) -> dict[str, list[str]]:
    """Break a few files of a synthetic dataset the way real partial copies are broken.

    Chooses `per_kind` distinct train images per defect kind (see DEFECT_KINDS) by `seed`
    and returns {kind: [image path relative to root, as in the label file]}. Box defects
    rewrite the image's `<stem>_BB.txt`; "bad_label" shortens its label vector to 43 values.
    The dataset must be one written by `generate` (SYNTHETIC.json is updated with the list).
    """
    root = Path(root)
    kinds = list(kinds)
    unknown = sorted(set(kinds) - set(DEFECT_KINDS))
    if unknown:
        raise ConfigError(f"unknown defect kind(s) {unknown}; known: {list(DEFECT_KINDS)}")
    marker = root / MARKER
    if not marker.is_file():
        raise DataError(f"{root} is not a synthetic dataset (no {MARKER}); refusing to damage it")
    label_file = root / LABEL_DIR / "train_label.json"
    labels = json.loads(label_file.read_text())
    keys = sorted(labels)
    needed = len(kinds) * per_kind
    if needed > len(keys):
        raise DataError(f"{label_file} lists {len(keys)} images, too few for {needed} defects")
    rng = np.random.default_rng([seed, 0xDEFEC7])
    chosen = [keys[i] for i in sorted(rng.choice(len(keys), size=needed, replace=False))]
    rng.shuffle(chosen)

    bb_text = {
        "empty_bb": "",
        "malformed_bb": "12 34 abc\n",
        "nonfinite_bb": "nan 20 inf 80 0.99\n",
        "negative_bb": "-20 -10 -60 90 0.99\n",
        "zero_size_bb": "60 70 0 0 0.99\n",
        "outside_bb": "300 310 40 40 0.99\n",
    }
    report: dict[str, list[str]] = {}
    for i, kind in enumerate(kinds):
        paths = sorted(chosen[i * per_kind : (i + 1) * per_kind])
        report[kind] = paths
        for rel in paths:
            image = root / rel
            bb = image.with_name(image.stem + "_BB.txt")
            if kind == "missing_image":
                image.unlink()
            elif kind == "missing_bb":
                bb.unlink()
            elif kind == "bad_label":
                labels[rel] = labels[rel][:-1]
            else:
                bb.write_text(bb_text[kind])
    if "bad_label" in report:
        _write_labels(label_file, labels)
    meta = json.loads(marker.read_text())
    meta["defects"] = report
    write_json(marker, meta)
    return report


# ----------------------------------------------------------------------------- dataset layout


def _check_replaceable(root: Path) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise DataError(f"synthetic dataset root {root} exists and is not a directory")
    # Either sentinel will do: a workflow may delete SYNTHETIC.json as a stale output.
    if (root / MARKER).is_file() or (root / DATA_SENTINEL).is_file():
        return
    if any(p.is_file() or p.is_symlink() for p in root.rglob("*")):
        raise DataError(
            f"synthetic dataset root {root} holds files but no {MARKER}: "
            "refusing to overwrite what may be a real dataset; choose an empty or new folder"
        )


def _make_subjects(n: int, seed: int, test_fraction: float) -> list[Subject]:
    rng = np.random.default_rng([seed, 1])
    id_space = max(10177, 4 * n)  # CelebA-Spoof has 10,177 subjects
    ids = sorted(int(v) for v in rng.choice(np.arange(1, id_space + 1), size=n, replace=False))
    n_test = int(round(test_fraction * n)) if n > 1 else 0
    n_test = min(n_test, n - 1)
    test_ids = set(int(v) for v in rng.choice(ids, size=n_test, replace=False)) if n_test else set()
    prevalence = rng.uniform(0.05, 0.6, size=40)
    subjects = []
    for idx, sid in enumerate(ids):
        srng = np.random.default_rng([seed, 2, idx])
        tone = SKIN_TONES[srng.integers(len(SKIN_TONES))] * srng.uniform(0.92, 1.06, 3)
        hair = HAIR_NAMES[srng.integers(len(HAIR_NAMES))]
        aspect = float(srng.uniform(1.1, 1.5))
        hair_cover = float(srng.uniform(0.1, 0.45))
        attrs = (srng.random(40) < prevalence).astype(int)
        for name, (_, attr) in HAIR_COLOURS.items():
            if attr is not None:
                attrs[attr] = int(name == hair)
        attrs[ATTR_OVAL] = int(aspect > 1.3)
        attrs[ATTR_BANGS] = int(hair_cover > 0.3)
        subjects.append(
            Subject(
                subject_id=str(sid),
                official_split="test" if sid in test_ids else "train",
                skin=_rgb(np.clip(tone, 0, 255)),
                aspect=aspect,
                eye_y=float(srng.uniform(0.15, 0.35)),
                eye_dx=float(srng.uniform(0.3, 0.48)),
                eye_size=float(srng.uniform(0.1, 0.17)),
                hair=hair,
                hair_long=bool(srng.random() < 0.4),
                hair_cover=hair_cover,
                mouth_w=float(srng.uniform(0.25, 0.5)),
                lip=_rgb(np.clip(tone * srng.uniform(0.55, 0.8) + [40, 0, 0], 0, 255)),
                clothes=_rgb(srng.uniform(20, 235, 3)),
                live_setting=_make_setting(srng),
                spoof_setting=_make_setting(srng),
                attributes=tuple(int(a) for a in attrs),
            )
        )
    return subjects


def _make_setting(rng: np.random.Generator) -> Setting:
    kinds = ("flat", "gradient", "stripes", "checker", "blobs")
    c1 = rng.uniform(30, 230, 3)
    c2 = np.clip(c1 + rng.normal(0, 45, 3), 0, 255)
    # The same cast distribution for live (ambient light) and spoof (capture device) settings.
    cast = np.clip(rng.normal(1.0, 0.07, 3), 0.8, 1.2)
    bezel = rng.choice([20.0, 35.0, 60.0, 180.0, 215.0]) * np.ones(3) + rng.normal(0, 8, 3)
    return Setting(
        bg_kind=str(kinds[rng.integers(len(kinds))]),
        bg_colours=(_rgb(c1), _rgb(c2)),
        bg_period=float(rng.uniform(0.08, 0.3)),
        bg_angle=float(rng.uniform(0, np.pi)),
        cast=_rgb(cast),
        bezel=_rgb(np.clip(bezel, 0, 255)),
    )


def _write_dataset(
    tmp: Path, n_subjects: int, per_subject: int, seed: int, size_range: tuple[int, int], test_fraction: float,
    identity_shortcut: float, distinct_cue: bool, workers: int,
) -> dict:
    subjects = _make_subjects(n_subjects, seed, test_fraction)
    n_live = max(1, int(round(per_subject / 3)))
    n_spoof = per_subject - n_live
    total = n_subjects * per_subject
    rng = np.random.default_rng([seed, 3])
    image_ids = rng.choice(1_000_000, size=total, replace=False)
    rounds = -(-n_subjects * n_spoof // 10)
    spoof_types = np.concatenate([rng.permutation(10) + 1 for _ in range(rounds)])
    # Hidden capture-device quality of each spoof image, for protocol 2: a stream of its own, so the
    # images and intra_test stay what they were before protocols were written.
    device_rng = np.random.default_rng([seed, 6])
    devices = np.concatenate([device_rng.permutation(3) for _ in range(-(-n_subjects * n_spoof // 3))])
    shown: list[tuple[str, str, int, int]] = []  # (path, part, spoof type, device quality or -1)

    labels: dict[str, dict[str, list[int]]] = {"train": {}, "test": {}}
    counts = {
        "subjects": n_subjects,
        "images": total,
        "live": 0,
        "spoof": 0,
        "train_subjects": 0,
        "test_subjects": 0,
        "train_images": 0,
        "test_images": 0,
        "spoof_types": {str(t): 0 for t in range(1, 11)},
    }
    # Every image has its own random streams, so subjects render in any order: in parallel, then
    # gathered in subject order (the dataset is byte-identical for any number of workers).
    render = partial(
        _write_subject, tmp, per_subject=per_subject, n_live=n_live, seed=seed, size_range=size_range,
        identity_shortcut=identity_shortcut, distinct_cue=distinct_cue,
    )
    columns = (
        subjects, range(n_subjects),
        np.split(image_ids, n_subjects),  # each subject's image ids and spoof types (the last round's extras unused)
        np.split(spoof_types[: n_subjects * n_spoof], n_subjects),
    )
    if workers > 1:
        # Processes, not threads (drawing is bound by the GIL); forked, because a spawned child
        # would re-run the calling script (a Snakemake rule's script has no __main__ guard).
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            written = list(pool.map(render, *columns, chunksize=8))
    else:
        written = list(map(render, *columns))
    for s_idx, (subject, images) in enumerate(zip(subjects, written)):
        part = subject.official_split
        counts[f"{part}_subjects"] += 1
        for rel, kind, spoof_type, source, vector in images:
            labels[part][rel] = vector
            shown.append((rel, part, spoof_type, int(devices[s_idx * n_spoof + (source - n_live)]) if spoof_type else -1))
            counts[kind] += 1
            counts[f"{part}_images"] += 1
            if spoof_type:
                counts["spoof_types"][str(spoof_type)] += 1
    for part in ("train", "test"):
        _write_labels(tmp / LABEL_DIR / f"{part}_label.json", labels[part])
    vectors = {**labels["train"], **labels["test"]}
    counts["protocols"] = {"intra_test": {part: len(labels[part]) for part in ("train", "test")}}
    for protocol, selected in _protocol_selection(shown).items():
        for side, paths in selected.items():
            _write_labels(tmp / "metas" / protocol / f"{side}_label.json", {p: vectors[p] for p in paths})
        counts["protocols"][protocol] = {side: len(paths) for side, paths in selected.items()}
    (tmp / DATA_SENTINEL).write_text("written by fasflow.synth; safe to replace\n")
    return counts


def _write_subject(
    tmp: Path, subject: Subject, s_idx: int, image_ids: np.ndarray, spoof_types: np.ndarray, *,
    per_subject: int, n_live: int, seed: int, size_range: tuple[int, int], identity_shortcut: float, distinct_cue: bool,
) -> list[tuple[str, str, int, int, list[int]]]:
    """Render and save one subject's images and box files; (path, kind, spoof type, source, label vector) each."""
    part = subject.official_split
    ext = "jpg" if part == "train" else "png"
    images = []
    for j in range(per_subject):
        image_id = f"{int(image_ids[j]):06d}"
        source = _capture_source(identity_shortcut, seed, s_idx, j, n_live)
        spoof_type = 0 if source < n_live else int(spoof_types[source - n_live])
        irng = np.random.default_rng([seed, 4, s_idx, source])
        # The other class's setting with probability (1 - k) / 2, from a stream of its own.
        swap = np.random.default_rng([seed, 7, s_idx, source]).random() < (1.0 - identity_shortcut) / 2
        pixels, box, illum, env, mouth_open = _render(subject, spoof_type, irng, size_range, swap, distinct_cue)
        if source != j:  # a repeated capture: the same scene, its own sensor noise
            pixels = _resample_noise(pixels, np.random.default_rng([seed, 9, s_idx, j]))
        kind = "live" if spoof_type == 0 else "spoof"
        rel = f"Data/{part}/{subject.subject_id}/{kind}/{image_id}.{ext}"
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(Image.fromarray(pixels), path, ext)
        h, w = pixels.shape[:2]
        path.with_name(f"{image_id}_BB.txt").write_text(_bb_line(box, w, h, irng))
        vector = list(subject.attributes)
        vector[ATTR_MOUTH_OPEN] = int(mouth_open)
        vector[ATTR_SMILING] = int(mouth_open or subject.attributes[ATTR_SMILING])
        vector += [spoof_type, illum if spoof_type else 0, env if spoof_type else 0, int(spoof_type > 0)]
        images.append((rel, kind, spoof_type, source, vector))
    return images


def _capture_source(shortcut: float, seed: int, s_idx: int, j: int, n_live: int) -> int:
    """The image whose capture image `j` of a subject repeats: its class's first image with
    probability `shortcut` (the identity-shortcut control), else itself (an independent capture)."""
    anchor = 0 if j < n_live else n_live
    if j == anchor or shortcut <= 0.0:
        return j
    return anchor if np.random.default_rng([seed, 8, s_idx, j]).random() < shortcut else j


def _resample_noise(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A repeated capture: new sensor noise and a slight exposure change on the same scene."""
    out = pixels.astype(np.float32) * rng.uniform(0.97, 1.03)
    out += rng.standard_normal(pixels.shape, dtype=np.float32) * 2.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _protocol_selection(shown: list[tuple[str, str, int, int]]) -> dict[str, dict[str, list[str]]]:
    """protocol -> {"train": paths, "test": paths} by the protocols' rules (module docstring).

    Live images of the official train part are in every train file, those of the test part in
    every test file; spoofs are selected by type (protocol 1) or hidden device quality (protocol 2).
    """
    def pick(part: str, keep_spoof) -> list[str]:
        return [p for p, pt, t, d in shown if pt == part and (t == 0 or keep_spoof(t, d))]

    selection = {
        "protocol1": {
            "train": pick("train", lambda t, d: t in PROTOCOL1_TRAIN_TYPES),
            "test": pick("test", lambda t, d: t in PROTOCOL1_TEST_TYPES),
        }
    }
    for q, quality in enumerate(DEVICE_QUALITIES):
        selection[f"protocol2/test_on_{quality}_quality_device"] = {
            "train": pick("train", lambda t, d, q=q: d != q),
            "test": pick("test", lambda t, d, q=q: d == q),
        }
    return selection


def _write_labels(path: Path, labels: dict[str, list[int]]) -> None:
    # One entry per line, sorted: diffable and byte-stable.
    lines = [f"{json.dumps(k)}: {json.dumps(labels[k])}" for k in sorted(labels)]
    text = "{\n" + ",\n".join(lines) + "\n}\n" if lines else "{}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _save(image: Image.Image, path: Path, ext: str) -> None:
    if ext == "jpg":
        image.save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=2, optimize=False)
    else:
        image.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)


def _bb_line(box: tuple[float, float, float, float], w: int, h: int, rng: np.random.Generator) -> str:
    """Integer box in the 224x224 frame, clamped so that it maps inside the image."""
    x, y, bw, bh = box
    x0 = int(np.clip(np.floor(x * BOX_FRAME / w), 0, BOX_FRAME - 2))
    y0 = int(np.clip(np.floor(y * BOX_FRAME / h), 0, BOX_FRAME - 2))
    x1 = int(np.clip(np.ceil((x + bw) * BOX_FRAME / w), x0 + 1, BOX_FRAME))
    y1 = int(np.clip(np.ceil((y + bh) * BOX_FRAME / h), y0 + 1, BOX_FRAME))
    score = float(rng.uniform(0.95, 1.0))
    return f"{x0} {y0} {x1 - x0} {y1 - y0} {score:.6f}\n"


# ----------------------------------------------------------------------------- drawing


def _rgb(v) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


class _Canvas:
    """Float RGB image with coordinate grids, and soft (anti-aliased) shape masks."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def ellipse(self, cx: float, cy: float, a: float, b: float) -> np.ndarray:
        # Evaluated only inside the bounding box: most shapes are small.
        out = np.zeros((self.h, self.w), np.float32)
        y0, y1 = max(0, int(cy - b) - 2), min(self.h, int(cy + b) + 3)
        x0, x1 = max(0, int(cx - a) - 2), min(self.w, int(cx + a) + 3)
        if y0 >= y1 or x0 >= x1:
            return out
        xx, yy = self.xx[y0:y1, x0:x1], self.yy[y0:y1, x0:x1]
        d = np.sqrt(((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2)
        out[y0:y1, x0:x1] = np.clip(0.5 - (d - 1.0) * min(a, b), 0.0, 1.0)
        return out

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        x = np.arange(self.w, dtype=np.float32)
        y = np.arange(self.h, dtype=np.float32)
        mx = np.clip(np.minimum(x + 0.5 - x0, x1 - (x - 0.5)), 0, 1)
        my = np.clip(np.minimum(y + 0.5 - y0, y1 - (y - 0.5)), 0, 1)
        return my[:, None] * mx[None, :]

    def ring(self, mask: np.ndarray, width: float = 1.0) -> np.ndarray:
        """A band about `width` px wide along the edge of a soft mask."""
        gy, gx = np.gradient(mask)
        edge = np.clip(np.hypot(gx, gy) * 2.0, 0, 1)
        if width > 1.2:
            edge = np.maximum(edge, np.roll(edge, 1, 0))
            edge = np.maximum(edge, np.roll(edge, 1, 1))
        return edge


def _paint(img: np.ndarray, mask: np.ndarray, colour) -> None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return
    ys, xs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    m = mask[ys, xs, None]
    img[ys, xs] += m * (np.asarray(colour, dtype=np.float32) - img[ys, xs])


def _background(c: _Canvas, s: Setting, rng: np.random.Generator) -> np.ndarray:
    c1 = np.asarray(s.bg_colours[0], np.float32)
    c2 = np.asarray(s.bg_colours[1], np.float32)
    u = (c.xx * math.cos(s.bg_angle) + c.yy * math.sin(s.bg_angle)) / max(c.h, c.w)
    phase = rng.uniform(0, 1)
    if s.bg_kind == "flat":
        t = np.zeros_like(u)
    elif s.bg_kind == "gradient":
        t = np.clip(u - u.min(), 0, 1)
    elif s.bg_kind == "stripes":
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (u / s.bg_period + phase))
    elif s.bg_kind == "checker":
        p = s.bg_period * max(c.h, c.w)
        t = ((np.floor(c.xx / p + phase) + np.floor(c.yy / p)) % 2).astype(np.float32)
    else:  # blobs: a few soft discs
        t = np.zeros_like(u)
        for _ in range(4):
            r = rng.uniform(0.1, 0.3) * max(c.h, c.w)
            t = np.maximum(t, c.ellipse(rng.uniform(0, c.w), rng.uniform(0, c.h), r, r))
    return c1 + t[..., None] * (c2 - c1)


@dataclass
class _Face:
    cx: float
    cy: float
    a: float  # half width
    b: float  # half height

    def __post_init__(self) -> None:
        # Python floats keep the float32 image arithmetic in float32 (NumPy 2 promotion rules).
        self.cx, self.cy, self.a, self.b = float(self.cx), float(self.cy), float(self.a), float(self.b)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.cx - self.a, self.cy - self.b, 2 * self.a, 2 * self.b)


def _place_face(subject: Subject, w: int, h: int, rng: np.random.Generator, scale: tuple[float, float]) -> _Face:
    b = rng.uniform(*scale) * min(h, w / subject.aspect) / 2
    a = b / subject.aspect
    cx = rng.uniform(a + 1, w - a - 1)
    cy = rng.uniform(b + 1, h - b - 1)
    return _Face(float(cx), float(cy), float(a), float(b))


def _draw_person(
    img: np.ndarray,
    c: _Canvas,
    subj: Subject,
    f: _Face,
    rng: np.random.Generator,
    mouth_open: bool,
    mask3d: bool = False,
) -> None:
    """Draw body, hair, face, eyes, brows and mouth of `subj` at face `f` onto `img`."""
    hair = HAIR_COLOURS[subj.hair][0]
    _paint(img, c.ellipse(f.cx, f.cy + 2.3 * f.b, 2.4 * f.a, 1.4 * f.b), subj.clothes)
    _paint(img, c.rect(f.cx - 0.35 * f.a, f.cy + 0.6 * f.b, f.cx + 0.35 * f.a, f.cy + 1.3 * f.b), subj.skin)
    if subj.hair_long:
        _paint(img, c.ellipse(f.cx, f.cy + 0.25 * f.b, 1.3 * f.a, 1.25 * f.b), hair)
    hair_cap = c.ellipse(f.cx, f.cy - 0.12 * f.b, 1.1 * f.a, 1.02 * f.b)
    _paint(img, hair_cap, hair)
    face = c.ellipse(f.cx, f.cy, f.a, f.b)
    # Round shading: darker towards the sides, from a light direction that varies per image.
    lx = rng.uniform(-0.4, 0.4)
    dx = (c.xx - f.cx) / f.a
    shade = np.clip(1.0 - 0.22 * (dx - lx) ** 2, 0.6, 1.05)
    skin = np.asarray(subj.skin, np.float32)
    if mask3d:
        # Plastic: less saturated, shading in flat steps.
        skin = skin * 0.7 + skin.mean() * 0.3 + 10
        shade = np.round(shade * 6) / 6
    m = face[..., None]
    img *= 1.0 - m
    img += m * skin * shade[..., None]
    fringe = hair_cap * (c.yy < f.cy - f.b * (1.0 - subj.hair_cover))
    _paint(img, fringe, hair)
    # Eyes (gaze varies per image); a 3D mask shows dark eye holes instead.
    gaze = rng.uniform(-0.3, 0.3)
    ey = f.cy - subj.eye_y * f.b
    er = max(subj.eye_size * f.a, 0.8)
    for side in (-1, 1):
        ex = f.cx + side * subj.eye_dx * f.a
        _paint(img, c.ellipse(ex, ey - 1.8 * er, 1.5 * er, 0.35 * er + 0.3), hair)
        if mask3d:
            _paint(img, c.ellipse(ex, ey, 1.3 * er, 0.8 * er), (25, 20, 20))
        else:
            _paint(img, c.ellipse(ex, ey, 1.4 * er, 0.8 * er), (245, 245, 240))
            _paint(img, c.ellipse(ex + gaze * er, ey, 0.6 * er, 0.6 * er), (40, 30, 25))
    # Nose shadow and mouth.
    _paint(img, 0.25 * c.ellipse(f.cx, f.cy + 0.15 * f.b, 0.1 * f.a, 0.22 * f.b), (60, 40, 30))
    mh = (0.16 if mouth_open else 0.06) * f.b
    _paint(img, c.ellipse(f.cx, f.cy + 0.55 * f.b, subj.mouth_w * f.a, mh + 0.4), subj.lip)
    if mouth_open:
        _paint(img, c.ellipse(f.cx, f.cy + 0.55 * f.b, 0.7 * subj.mouth_w * f.a, 0.5 * mh + 0.3), (50, 20, 20))


def _halftone(c: _Canvas, period: float, amp: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative colour halftone: a dot screen per channel at its own angle (rosettes)."""
    base = rng.uniform(0, np.pi / 2)
    out = np.empty((c.h, c.w, 3), np.float32)
    for ch, ang in enumerate((base, base + 0.26, base + 0.52)):
        u = c.xx * math.cos(ang) + c.yy * math.sin(ang)
        v = -c.xx * math.sin(ang) + c.yy * math.cos(ang)
        dots = 0.5 + 0.5 * np.cos(2 * np.pi * u / period) * np.cos(2 * np.pi * v / period)
        out[..., ch] = 1.0 - amp + amp * dots * 1.6
    return out


def _print_halftone(c: _Canvas, f: _Face, rng: np.random.Generator) -> np.ndarray:
    """The halftone of a print: 3-5 dots across the face, coarse and strong enough to
    survive the demo's 48 px input and to be learnt from scratch in a few epochs."""
    return _halftone(c, max(3.0, 2 * f.a / rng.uniform(3, 5)), rng.uniform(0.45, 0.6), rng)


def _moire(c: _Canvas, f: _Face, amp: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative screen moire: curved coloured bands (face-sized) over a fine carrier."""
    ang = rng.uniform(0, np.pi)
    band = 2 * f.a / rng.uniform(1.2, 3.0)
    carrier = max(3.0, 2 * f.a / rng.uniform(3.5, 5))  # coarse enough for a 48 px input
    u = c.xx * math.cos(ang) + c.yy * math.sin(ang)
    v = -c.xx * math.sin(ang) + c.yy * math.cos(ang)
    bend = rng.uniform(-1.5, 1.5) / max(c.h, c.w)
    phase = 2 * np.pi * (u + bend * v * v) / band
    fine = np.cos(2 * np.pi * (u * 0.9 + v * 0.3) / carrier)
    out = np.empty((c.h, c.w, 3), np.float32)
    for ch in range(3):
        low = np.cos(phase + ch * 2.1)  # channel phase offsets give rainbow bands
        out[..., ch] = 1.0 + amp * (0.7 * low + 0.5 * fine * (0.5 + 0.5 * low))
    return out


def _render(
    subj: Subject, spoof_type: int, rng: np.random.Generator, size_range: tuple[int, int],
    swap_setting: bool = False, distinct_cue: bool = True,
) -> tuple[np.ndarray, tuple[float, float, float, float], int, int, bool]:
    """Render one image; return (uint8 HxWx3, face box in pixels, illumination, environment, mouth open).

    `swap_setting`: capture in the other class's setting of the subject (the identity-shortcut control);
    `distinct_cue=False`: a 3D mask also carries the print halftone (the distinct-cue control).
    """
    w = int(rng.integers(size_range[0], size_range[1] + 1))
    h = int(rng.integers(size_range[0], size_range[1] + 1))
    illum = int(rng.choice(list(ILLUMINATION), p=[p for p, _ in ILLUMINATION.values()]))
    env = int(rng.choice(list(ENVIRONMENT), p=list(ENVIRONMENT.values())))
    mouth_open = bool(rng.random() < 0.3)
    c = _Canvas(h, w)
    live = spoof_type == 0
    setting = subj.live_setting if live != swap_setting else subj.spoof_setting

    if live or spoof_type in MASK_TYPES or spoof_type == MASK3D_TYPE:
        # The person is in front of the camera (possibly wearing a mask).
        face = _place_face(subj, w, h, rng, FACE_SCALE)
        img = _background(c, setting, rng)
        _draw_person(img, c, subj, face, rng, mouth_open, mask3d=spoof_type == MASK3D_TYPE)
        face_mask = c.ellipse(face.cx, face.cy, face.a, face.b)
        if spoof_type in MASK_TYPES:
            img = _paper_mask(img, c, subj, face, spoof_type, rng, mouth_open)
        elif spoof_type == MASK3D_TYPE:
            img = _plastic_mask(img, c, face, face_mask, rng, rim=not distinct_cue)
            if not distinct_cue:
                _paint_array(img, face_mask, img * _print_halftone(c, face, rng))
    else:
        face, img = _medium_attack(c, subj, spoof_type, rng, mouth_open, setting)

    # Lighting: back light brightens the background relative to the face.
    if illum == 3:
        person = np.clip(c.ellipse(face.cx, face.cy + 0.8 * face.b, 1.4 * face.a, 1.9 * face.b), 0, 1)
        img *= (1.35 - 0.6 * person)[..., None]
    ramp_ang = rng.uniform(0, 2 * np.pi)
    ramp = (c.xx - w / 2) * math.cos(ramp_ang) + (c.yy - h / 2) * math.sin(ramp_ang)
    img *= (1.0 + rng.uniform(0, 0.3) * ramp / max(h, w))[..., None]
    cast = np.asarray(setting.cast, np.float32) * rng.normal(1.0, 0.02, 3).astype(np.float32)
    img *= cast
    # Target mean brightness: the same distribution for live and spoof.
    lo, hi = ILLUMINATION[illum][1]
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img *= rng.uniform(lo, hi) / max(float(grey.mean()), 1.0)

    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    sigma = rng.uniform(0.0, 0.7) if live else rng.uniform(0.3, 1.2)
    if sigma > 0.05:
        out = out.filter(ImageFilter.GaussianBlur(sigma))
    noise = rng.standard_normal((h, w, 3), dtype=np.float32) * rng.uniform(1.0, 5.0)
    arr = np.asarray(out, np.float32) + noise
    return np.clip(np.round(arr), 0, 255).astype(np.uint8), face.box, illum, env, mouth_open


def _medium_attack(
    c: _Canvas, subj: Subject, spoof_type: int, rng: np.random.Generator, mouth_open: bool, setting: Setting
) -> tuple[_Face, np.ndarray]:
    """A print or a screen showing a live photo of the subject, held in `setting` (the spoof setting unless swapped)."""
    h, w = c.h, c.w
    # The face is placed exactly as in live images (same size distribution: the box size is
    # no shortcut); the displayed content extends a random distance around it, the medium's
    # margin or bezel around that, so the medium's edge is often, not always, in view.
    face = _place_face(subj, w, h, rng, FACE_SCALE)
    side = (0.2, 0.9) if spoof_type == 9 else (0.4, 2.5)  # a phone screen is narrow
    vx0 = face.cx - face.a * (1 + rng.uniform(*side))
    vx1 = face.cx + face.a * (1 + rng.uniform(*side))
    vy0 = face.cy - face.b * (1 + rng.uniform(0.3, 1.5))
    vy1 = face.cy + face.b * (1 + rng.uniform(0.3, 2.5))
    scale = max(vx1 - vx0, vy1 - vy0)
    inset = 0.0
    bezel = spoof_type in SCREEN_TYPES
    if bezel:
        inset = {7: 0.03, 8: 0.07, 9: 0.1}[spoof_type] * scale + 1.0
    border = {1: 0.04, 3: 0.08}.get(spoof_type, 0.0) * scale
    inset += border
    x0, y0, x1, y1 = vx0 - inset, vy0 - inset, vx1 + inset, vy1 + inset
    content = _background(c, subj.live_setting, rng)
    _draw_person(content, c, subj, face, rng, mouth_open)
    content *= np.asarray(subj.live_setting.cast, np.float32)

    if spoof_type in PRINT_TYPES:
        content *= _print_halftone(c, face, rng)
        sat = rng.uniform(0.55, 0.85) if spoof_type == 3 else rng.uniform(0.75, 0.95)
        content = content * sat + content.mean(axis=2, keepdims=True) * (1 - sat)
        if spoof_type == 1:  # glossy photo paper: a soft specular band
            ang = rng.uniform(0, np.pi)
            u = (c.xx * math.cos(ang) + c.yy * math.sin(ang)) / max(h, w)
            content += (60 * np.exp(-(((u - rng.uniform(0.2, 0.8)) / 0.08) ** 2)))[..., None]
    else:  # screen: lifted blacks, moire, faint pixel grid
        content = content * rng.uniform(0.75, 0.9) + rng.uniform(15, 35)
        content *= _moire(c, face, rng.uniform(0.4, 0.5), rng)
        content *= (1.0 + 0.06 * np.cos(2 * np.pi * c.yy / 2.0))[..., None]

    img = _background(c, setting, rng)
    medium = c.rect(x0, y0, x1, y1)
    if bezel:
        _paint(img, medium, setting.bezel)
    elif border:
        _paint(img, medium, (238, 236, 228))  # paper margin
    _paint_array(img, c.rect(vx0, vy0, vx1, vy1), content)
    if spoof_type == 2:  # poster: a fold crease
        xf = rng.uniform(0.3, 0.7) * w
        img *= (1.0 - 0.25 * np.exp(-(((c.xx - xf) / 1.2) ** 2)))[..., None]
    return face, img


def _paint_array(img: np.ndarray, mask: np.ndarray, src: np.ndarray) -> None:
    m = mask[..., None]
    img *= 1.0 - m
    img += m * src


def _paper_mask(
    img: np.ndarray, c: _Canvas, subj: Subject, face: _Face, spoof_type: int, rng: np.random.Generator, mouth_open: bool
) -> np.ndarray:
    """A printed cut-out worn in front of the face: print texture inside, a hard cut edge."""
    dx, dy = rng.normal(0, 0.06, 2) * face.a if spoof_type == 6 else (0.0, 0.0)
    # The printed face: the subject again, slightly misaligned for region masks.
    printed = img.copy()
    shifted = _Face(face.cx + dx, face.cy + dy, face.a * rng.uniform(0.95, 1.05), face.b)
    _draw_person(printed, c, subj, shifted, rng, mouth_open)
    printed *= _print_halftone(c, face, rng)
    sat = rng.uniform(0.6, 0.9)
    printed = printed * sat + printed.mean(axis=2, keepdims=True) * (1 - sat)
    if spoof_type == 4:
        region = c.ellipse(face.cx, face.cy, face.a * 1.04, face.b * 1.04)
    elif spoof_type == 5:
        region = np.maximum(
            c.ellipse(face.cx, face.cy - 0.1 * face.b, face.a * 1.15, face.b * 1.15),
            c.ellipse(face.cx, face.cy + 2.3 * face.b, 2.4 * face.a, 1.4 * face.b),
        )
    else:  # region: a band across the eyes or the lower face
        top = face.cy - 0.55 * face.b if rng.random() < 0.5 else face.cy + 0.1 * face.b
        region = c.rect(face.cx - 1.1 * face.a, top, face.cx + 1.1 * face.a, top + 0.5 * face.b)
    out = img.copy()
    _paint_array(out, region, printed)
    edge_colour = (245, 245, 240) if rng.random() < 0.5 else (20, 20, 20)
    _paint(out, c.ring(region, width=2.0) * 0.9, edge_colour)
    return out


def _plastic_mask(
    img: np.ndarray, c: _Canvas, face: _Face, face_mask: np.ndarray, rng: np.random.Generator, rim: bool = False
) -> np.ndarray:
    """3D mask: specular spots on forehead and cheeks; with `rim`, a dark edge where the mask ends,
    like the cut edge of a paper mask (the shared-cue variant of the distinct-cue control)."""
    out = img.copy()
    for ox, oy, r in ((0.0, -0.55, 0.22), (-0.45, 0.15, 0.15), (0.45, 0.15, 0.15)):
        spot = c.ellipse(face.cx + ox * face.a, face.cy + oy * face.b, r * face.a + 0.5, 0.7 * r * face.b + 0.5)
        out += (spot * face_mask * rng.uniform(40, 80))[..., None]
    if rim:
        _paint(out, c.ring(face_mask, width=2.0) * 0.8, (35, 30, 28))
    return out

