"""CelebA-Spoof metadata -> one clean table of usable images, with every problem counted.

Real copies are messy (partial downloads, missing or broken box files, odd label vectors).
Each problem class has a policy: `skip` (drop the image, count it), `keep` (boxes only:
use the whole image, count it) or `fail` (stop with an error naming examples; nothing is written).

Ingest reads label files, image headers and box files; it never decodes pixels. Images whose
header already says they cannot be decoded safely (a decompression bomb) are unreadable here;
images that only fail a full decode (truncated, corrupt data) are caught by the face cache, which
applies the same policies (`fasflow.faces.write_face_cache`).
"""

from __future__ import annotations

import math
import os
import posixpath
import warnings
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import polars as pl
from PIL import Image

from .errors import ConfigError, DataError

LABEL_LENGTH = 44
IDX_SPOOF_TYPE, IDX_ILLUMINATION, IDX_ENVIRONMENT, IDX_LABEL = 40, 41, 42, 43
N_SPOOF_TYPES = 11
EXAMPLES_PER_REASON = 5

# reason -> config key of its policy
POLICY_KEYS = {
    "unsafe_path": "on_unsafe_path",
    "malformed_label": "on_malformed_label",
    "duplicate_path": "on_duplicate",
    "missing_image": "on_missing_image",
    "unreadable_image": "on_unreadable_image",
    "bb_missing": "on_missing_box",
    "bb_malformed": "on_malformed_box",
    "bb_bad": "on_bad_box",
    "no_face": "on_no_face",  # external test sets located with the face detector (fasflow.external)
}

# Problems whose image can still be used whole (policy keep).
KEEPABLE = ("bb_missing", "bb_malformed", "bb_bad", "no_face")

# Sensible for real partial copies: skip and count; keep images whose box is unusable
# (whole image, counted); refuse label keys that try to leave the root.
DEFAULT_POLICIES = {
    "on_unsafe_path": "fail",
    "on_malformed_label": "skip",
    "on_duplicate": "skip",
    "on_missing_image": "skip",
    "on_unreadable_image": "skip",
    "on_missing_box": "keep",
    "on_malformed_box": "keep",
    "on_bad_box": "keep",
    "on_no_face": "keep",
}

# CelebA-Spoof's official protocols: folders under metas/, each with train_label.json and
# test_label.json (config/README.md, "Protocols", says what each one selects).
OFFICIAL_PROTOCOLS = (
    "intra_test",
    "protocol1",
    "protocol2/test_on_high_quality_device",
    "protocol2/test_on_middle_quality_device",
    "protocol2/test_on_low_quality_device",
)


def protocol_label_files(protocol: str) -> list[str]:
    """[train, test] label files of an official protocol, relative to the dataset root."""
    if protocol not in OFFICIAL_PROTOCOLS:
        raise ConfigError(f"unknown CelebA-Spoof protocol {protocol!r} (dataset.protocol); known: {', '.join(OFFICIAL_PROTOCOLS)}")
    return [f"metas/{protocol}/{side}_label.json" for side in ("train", "test")]


SCHEMA = {
    "path": pl.String,
    "subject_id": pl.String,
    "label": pl.Int8,
    "spoof_type": pl.Int8,
    "illumination": pl.Int16,
    "environment": pl.Int16,
    "official_split": pl.String,
    "protocol_split": pl.String,
    "width": pl.Int32,
    "height": pl.Int32,
    "box_x": pl.Float64,
    "box_y": pl.Float64,
    "box_w": pl.Float64,
    "box_h": pl.Float64,
    "box_score": pl.Float64,
    "box_status": pl.String,
}


class Tally:
    """Counts per reason with a few example paths, and the policy applied to each."""

    def __init__(self, policies: dict[str, str]) -> None:
        unknown = set(policies) - set(DEFAULT_POLICIES)
        if unknown:
            raise DataError(f"unknown ingest policy key(s): {sorted(unknown)}")
        self.policies = {**DEFAULT_POLICIES, **policies}
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)

    def add(self, reason: str, paths: list[str], detail: str = "") -> None:
        """Count `paths` under `reason`; raise DataError (naming them, and `detail`) if its policy is fail."""
        if not paths:
            return
        self.counts[reason] += len(paths)
        room = EXAMPLES_PER_REASON - len(self.examples[reason])
        self.examples[reason].extend(paths[: max(room, 0)])
        if self.policies[POLICY_KEYS[reason]] == "fail":
            raise DataError(
                f"{len(paths)} image(s) with problem '{reason}' and ingest.{POLICY_KEYS[reason]}: fail "
                f"(e.g. {', '.join(paths[:EXAMPLES_PER_REASON])}{': ' + detail if detail else ''}). "
                f"Set ingest.{POLICY_KEYS[reason]} to skip{' or keep' if reason in KEEPABLE else ''} to count them instead."
            )

    def action(self, reason: str) -> str:
        return self.policies[POLICY_KEYS[reason]]


# Absolute, drive-letter, backslash, empty, '.' or '..' components: anything that could leave the root.
UNSAFE_PATH = r"^$|^/|\\|^[^/]*:|//|/$|(^|/)\.\.?(/|$)"


def is_safe_relative(path: str) -> bool:
    """True for a relative POSIX path that stays inside the root (no absolute path, no '..')."""
    return not pl.Series([path]).str.contains(UNSAFE_PATH).item()


class RootGuard:
    """Resolves label paths under a dataset root, refusing any whose real path leaves the root.

    A path that is harmless as text can still escape through a symbolic link (a subject folder or
    an image linked to somewhere else). `resolve` follows every link with `os.path.realpath`
    before anything is opened; the real path of each folder is computed once and cached, so
    checking 625k images costs one `lstat` per image.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = os.path.realpath(root)
        self._prefix = self.root if self.root.endswith(os.sep) else self.root + os.sep
        self._folders: dict[str, str] = {}

    def resolve(self, relative: str) -> str | None:
        """The real path of `relative` under the root, or None if it leaves the root."""
        folder, name = os.path.split(os.path.join(self.root, relative))
        real_folder = self._folders.get(folder)
        if real_folder is None:
            real_folder = self._folders.setdefault(folder, os.path.realpath(folder))
        real = os.path.join(real_folder, name)
        if name in ("", ".", "..") or os.path.islink(real):
            real = os.path.realpath(real)
        return real if real.startswith(self._prefix) else None


def exceeds_pixel_limit(width: int, height: int) -> bool:
    """True for an image PIL would call a decompression bomb (more than Image.MAX_IMAGE_PIXELS)."""
    limit = Image.MAX_IMAGE_PIXELS
    return limit is not None and width * height > limit


def protocol_split_of(label_file: str) -> str:
    """'train' or 'test': which side of a protocol a label file lists, from its name.

    CelebA-Spoof's protocol folders each hold `train_label.json` and `test_label.json`.
    """
    name = posixpath.basename(str(label_file).replace(os.sep, "/"))
    for split in ("train", "test"):
        if name == f"{split}_label.json":
            return split
    raise DataError(
        f"label file {label_file}: cannot tell whether it lists a protocol's train or test images; "
        "its name must be train_label.json or test_label.json (dataset.label_files)"
    )


def read_label_file(root: Path, relative: str) -> dict:
    path = root / relative
    if not path.is_file():
        raise DataError(f"label file not found: {path} (dataset.label_files, relative to dataset.root)")
    try:
        labels = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise DataError(f"label file {path} is not valid JSON: {exc}") from exc
    if not isinstance(labels, dict):
        raise DataError(f"label file {path} must hold a JSON object of path -> label vector")
    if not labels:
        raise DataError(f"label file {path} lists no images")
    return labels


def labels_frame(labels: dict, source: str, tally: Tally) -> pl.DataFrame:
    """Path + label fields of one label file; malformed vectors and unsafe paths are counted.

    Row-wise Python is limited to one cheap type check per vector; the rest is polars.
    A vector is well-formed when it has 44 values and the four the study reads (indices
    40-43) are integers (a bool is not a label value) with a valid label and spoof type.
    `protocol_split` is the side of the protocol that `source` lists (from its file name).
    """
    protocol_split = protocol_split_of(source)
    paths = pl.Series("path", list(labels), dtype=pl.String)
    unsafe = paths.str.contains(UNSAFE_PATH)
    tally.add("unsafe_path", paths.filter(unsafe).to_list())
    vectors = list(labels.values())
    # Inlined _vector_ok: this comprehension runs 625,537 times at CelebA-Spoof scale.
    ok = [
        type(v) is list and len(v) == LABEL_LENGTH and type(v[40]) is int and type(v[41]) is int and type(v[42]) is int and type(v[43]) is int
        for v in vectors
    ]
    fields = {
        name: [v[i] if good else None for v, good in zip(vectors, ok)]
        for name, i in (("spoof_type", IDX_SPOOF_TYPE), ("illumination", IDX_ILLUMINATION), ("environment", IDX_ENVIRONMENT), ("label", IDX_LABEL))
    }
    # strict=False: an integer too large for Int64 becomes null, and so a malformed vector, not a crash.
    frame = pl.DataFrame([paths, *(pl.Series(k, v, dtype=pl.Int64, strict=False) for k, v in fields.items()), pl.Series("valid", ok, dtype=pl.Boolean)])
    frame = frame.filter(~unsafe)
    parts = pl.col("path").str.split("/")
    frame = frame.with_columns(
        parts.list.get(0, null_on_oob=True).alias("_data"),
        parts.list.get(1, null_on_oob=True).alias("official_split"),
        parts.list.get(2, null_on_oob=True).alias("subject_id"),
        parts.list.get(3, null_on_oob=True).alias("_kind"),
        parts.list.len().alias("_depth"),
    )
    well_formed = (
        pl.col("valid")
        & pl.col("label").is_in([0, 1])
        & pl.col("spoof_type").is_between(0, N_SPOOF_TYPES - 1)
        # live <=> spoof type 0; anything else is a contradictory vector
        & ((pl.col("label") == 0) == (pl.col("spoof_type") == 0))
        & pl.col("illumination").is_between(-(2**15), 2**15 - 1)  # stored as Int16
        & pl.col("environment").is_between(-(2**15), 2**15 - 1)
        & (pl.col("_data") == "Data")
        & (pl.col("_depth") == 5)
        & pl.col("_kind").is_in(["live", "spoof"])
    )
    frame = frame.with_columns(well_formed.fill_null(False).alias("valid"))
    tally.add("malformed_label", frame.filter(~pl.col("valid"))["path"].to_list())
    return frame.filter("valid").select(
        "path", "subject_id", "label", "spoof_type", "illumination", "environment", "official_split",
        pl.lit(protocol_split).alias("protocol_split"), "_kind",
    )


def parse_box(text: str) -> tuple[float, float, float, float, float] | None:
    """'x y w h score' -> floats, or None if empty, unparsable or non-finite."""
    fields = text.split()
    if len(fields) < 4:
        return None
    try:
        values = [float(v) for v in fields[:5]]
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in values):
        return None
    if len(values) == 4:
        values.append(float("nan"))
    return tuple(values)  # type: ignore[return-value]


def box_in_pixels(box224, width: int, height: int) -> tuple[float, float, float, float] | None:
    """Convert from the 224 frame and clip to the image; None if nothing of the box remains."""
    x, y, w, h = box224[:4]
    sx, sy = width / 224.0, height / 224.0
    left, top = max(0.0, x * sx), max(0.0, y * sy)
    right, bottom = min(float(width), (x + w) * sx), min(float(height), (y + h) * sy)
    if w <= 0 or h <= 0 or right - left < 1.0 or bottom - top < 1.0:
        return None
    return (left, top, right - left, bottom - top)


def inspect_file(guard: RootGuard, path: str) -> dict:
    """Image header size (no full decode) and the box file, as raw facts.

    Neither the image nor its box file is opened when its real path leaves the root.
    """
    image = guard.resolve(path)
    if image is None:
        return {"status": "unsafe_path"}
    if not os.path.isfile(image):
        return {"status": "missing_image"}
    try:
        with Image.open(image) as im:
            width, height = im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return {"status": "unreadable_image"}
    if exceeds_pixel_limit(width, height):
        return {"status": "unreadable_image"}  # a decompression bomb: never decoded
    bb = guard.resolve(posixpath.splitext(path)[0] + "_BB.txt")
    if bb is None:
        return {"status": "unsafe_path"}
    if not os.path.isfile(bb):
        return {"status": "ok", "width": width, "height": height, "box": "missing"}
    try:
        with open(bb, encoding="utf-8", errors="replace") as fh:
            box = parse_box(fh.read(4096))  # a box line is short; a huge file is malformed
    except OSError:
        box = None
    if box is None:
        return {"status": "ok", "width": width, "height": height, "box": "malformed"}
    pixels = box_in_pixels(box, width, height)
    if pixels is None:
        return {"status": "ok", "width": width, "height": height, "box": "bad"}
    return {"status": "ok", "width": width, "height": height, "box": "ok", "pixels": pixels, "score": box[4]}


def ingest(root: str | Path, label_files: list[str], policies: dict[str, str], check_files: bool = True, threads: int = 1) -> tuple[pl.DataFrame, dict]:
    """Read the label files under `root`; return (images table, report). Raises DataError on `fail`.

    Each label file's name (train_label.json / test_label.json) sets the `protocol_split` of its
    images; `official_split` is what the path says (Data/train or Data/test). Raises DataError,
    with the counts, when a label file leaves no usable image.
    """
    root = Path(root)
    sides = [protocol_split_of(f) for f in label_files]  # a badly named file fails before any reading
    tally = Tally(policies)
    frames, listed = [], {}
    for relative in label_files:
        labels = read_label_file(root, relative)
        listed[relative] = len(labels)
        frames.append(labels_frame(labels, relative, tally).with_columns(pl.lit(relative).alias("_source")))
    table = pl.concat(frames)
    duplicated = table.filter(pl.col("path").is_duplicated() & ~pl.col("path").is_first_distinct())
    tally.add("duplicate_path", duplicated["path"].to_list())
    table = table.unique("path", keep="first", maintain_order=True)
    # Files filed under live/ whose vector says spoof (or the reverse) are kept with the vector's label.
    mismatch = table.filter((pl.col("_kind") == "spoof") != (pl.col("label") == 1)).height

    if check_files:
        table = _attach_files(table, root, tally, threads)
    else:
        table = table.with_columns(
            pl.lit(None, pl.Int32).alias("width"), pl.lit(None, pl.Int32).alias("height"),
            *[pl.lit(None, pl.Float64).alias(c) for c in ("box_x", "box_y", "box_w", "box_h", "box_score")],
            pl.lit("unchecked").alias("box_status"),
        )
    usable_per_file = dict(table.group_by("_source").len().iter_rows())
    empty = [f for f in label_files if usable_per_file.get(f, 0) == 0]
    if empty:
        raise DataError(
            f"no usable images under {root} from label file(s) {', '.join(empty)} "
            f"(listed {', '.join(f'{listed[f]:,}' for f in empty)}; problems counted over all label files: "
            f"{dict(sorted(tally.counts.items()))}; policies: {tally.policies})"
        )
    table = table.select(list(SCHEMA)).cast(SCHEMA).sort("path")
    report = {
        "root": str(root),
        "label_files": list(label_files),
        "label_file_sides": dict(zip(label_files, sides)),
        "listed": sum(listed.values()),
        "listed_per_label_file": listed,
        "usable": table.height,
        "usable_per_label_file": {f: usable_per_file.get(f, 0) for f in label_files},
        "skipped_or_flagged": dict(sorted(tally.counts.items())),
        "policies": {reason: tally.action(reason) for reason in POLICY_KEYS if reason != "no_face"},  # no detector here
        "examples": {k: v for k, v in sorted(tally.examples.items())},
        "label_folder_mismatch_kept": mismatch,
        "box_status": dict(sorted(Counter(table["box_status"].to_list()).items())),
        "subjects": table["subject_id"].n_unique(),
        "live": int((table["label"] == 0).sum()),
        "spoof": int((table["label"] == 1).sum()),
        "protocol_split": _counts_by(table, "protocol_split"),
        "official_split": _counts_by(table, "official_split"),
        "check_files": check_files,
    }
    if check_files:
        gone = ("unsafe_path", "malformed_label", "duplicate_path", "missing_image")
        report["present"] = report["listed"] - sum(tally.counts[r] for r in gone)
    return table, report


def _counts_by(table: pl.DataFrame, column: str) -> dict[str, dict[str, int]]:
    """Images, subjects, live and spoof per value of `column`."""
    counts = table.group_by(column).agg(
        pl.len().alias("images"),
        pl.col("subject_id").n_unique().alias("subjects"),
        (pl.col("label") == 0).sum().alias("live"),
        (pl.col("label") == 1).sum().alias("spoof"),
    )
    return {row.pop(column): {k: int(v) for k, v in row.items()} for row in counts.sort(column).to_dicts()}


def _attach_files(table: pl.DataFrame, root: Path, tally: Tally, threads: int) -> pl.DataFrame:
    paths = table["path"].to_list()
    guard = RootGuard(root)
    # Ingest flags decompression bombs itself (exceeds_pixel_limit); PIL's warning would only add
    # noise. Filters are process-wide, so they are set here, before the worker threads start.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # Batches of paths per task: one future per image costs more than reading its header.
        batches = [paths[i : i + 512] for i in range(0, len(paths), 512)]
        facts = [fact for batch in pool.map(lambda b: [inspect_file(guard, p) for p in b], batches) for fact in batch]
    for reason in ("unsafe_path", "missing_image", "unreadable_image"):
        tally.add(reason, [p for p, f in zip(paths, facts) if f["status"] == reason])
    drop = set()
    for reason, kind in (("bb_missing", "missing"), ("bb_malformed", "malformed"), ("bb_bad", "bad")):
        hit = [p for p, f in zip(paths, facts) if f.get("box") == kind]
        tally.add(reason, hit)
        if tally.action(reason) == "skip":
            drop.update(hit)
    rows = []
    for path, fact in zip(paths, facts):
        if fact["status"] != "ok" or path in drop:
            rows.append(None)
            continue
        pixels = fact.get("pixels") or (None, None, None, None)
        rows.append((fact["width"], fact["height"], *pixels, fact.get("score"), fact["box"]))
    keep = [r is not None for r in rows]
    kept = [r for r in rows if r is not None]
    columns = list(zip(*kept)) if kept else [[]] * 8
    names = ["width", "height", "box_x", "box_y", "box_w", "box_h", "box_score", "box_status"]
    extra = pl.DataFrame({n: list(c) for n, c in zip(names, columns)}, schema={n: SCHEMA[n] for n in names})
    return pl.concat([table.filter(pl.Series(keep, dtype=pl.Boolean)), extra], how="horizontal")
