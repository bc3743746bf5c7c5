"""External test sets: other datasets scored by every trained model, with thresholds fixed on CelebA-Spoof.

A cross-dataset test asks whether what a model learned on CelebA-Spoof carries over to other
people, cameras, attacks and capture conditions. Each set named in the config key
`external_tests` is read in one of two layouts:

- ``folder``: ``<root>/live/[<subject>/]<image>`` and ``<root>/spoof/[<type>/][<subject>/]<image>``
  (the `subject_level` and `type_level` keys say which levels exist), with an optional box file
  ``<image stem>_BB.txt`` ("x y w h [score]") next to each image;
- ``table``: a CSV or parquet file with ``path`` (relative to `root`) and ``label`` (0/1 or
  live/spoof), optionally ``subject_id``, ``spoof_type`` (a name or a CelebA-Spoof code) and box
  columns ``box_x, box_y, box_w, box_h``.

Faces are located by the box file (`boxes: file`), the table's box columns (`columns`), the
offline OpenCV detector of `fasflow predict` (`detector`, fasflow.infer.detect_faces) or not at
all (`none`: the whole image). Boxes are in pixels or, as CelebA-Spoof gives them, in the frame
of the image resized to 224 x 224 (`box_units`). Ingest follows the CelebA-Spoof policies
(config section `ingest`, fasflow.ingest.Tally): unsafe paths, missing or unreadable images,
missing, malformed or bad boxes and images where the detector finds no face are counted in the
set's report and skipped, kept whole or refused as configured; nothing is dropped silently.
The usable images then go through the same face cache (fasflow.faces.write_face_cache) and
prediction (fasflow.predict.predict_split) as the CelebA-Spoof test split.

The cross-dataset table applies to each set the thresholds a deployment would have: the EER
threshold of the model's CelebA-Spoof *validation* scores and the paper's 0.5. The EER threshold
of the external set itself is reported separately as an oracle: it is chosen on the scores it is
judged on, so it is optimistic. Intervals are subject-level bootstrap intervals where the set
names subjects, image-level otherwise (each image its own cluster), and the table says which.

`write_shifted_set` renders a synthetic external set in a different capture style from the
demo's training data (fasflow.synth's faces under other sizes, colour temperature, blur, noise,
vignetting and JPEG quality): the domain shift the demo's cross-dataset table measures.
"""

from __future__ import annotations

import math
import os
import posixpath
import shutil
import tempfile
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import polars as pl
from PIL import Image, ImageFilter

from . import DECISION_THRESHOLD, SPOOF_TYPE_CODES, SPOOF_TYPES, io
from .errors import DataError
from .ingest import POLICY_KEYS, UNSAFE_PATH, RootGuard, Tally, box_in_pixels, exceeds_pixel_limit, parse_box

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
BOX_SUFFIX = "_BB.txt"
BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")
FRAME = 224.0  # CelebA-Spoof's box frame (fasflow.ingest.box_in_pixels)
# Attack names a set uses beyond CelebA-Spoof's ten get codes from here on, in sorted order.
FIRST_EXTRA_CODE = len(SPOOF_TYPES)
UNSPECIFIED_ATTACK = "spoof"  # the attack name of spoof/ without a type level, or a table row without one
MARKER = "EXTERNAL.json"  # written last by write_shifted_set: the set is complete
# A second mark of a generated set: the workflow deletes EXTERNAL.json (its output) before rerunning.
SENTINEL = ".fasflow-external"

SCHEMA = {
    "path": pl.String,
    "subject_id": pl.String,
    "label": pl.Int8,
    "spoof_type": pl.Int8,
    "attack": pl.String,
    "width": pl.Int32,
    "height": pl.Int32,
    "box_x": pl.Float64,
    "box_y": pl.Float64,
    "box_w": pl.Float64,
    "box_h": pl.Float64,
    "box_score": pl.Float64,
    "box_status": pl.String,
}


# ---------------------------------------------------------------------------
# configuration


def attack_codes(names: Sequence[str]) -> dict[str, int]:
    """Code of each attack name: 0 live, CelebA-Spoof's code for its ten names, FIRST_EXTRA_CODE.. for the rest (sorted)."""
    codes = {"live": 0}
    extra = sorted({n for n in names if n != "live" and n not in SPOOF_TYPE_CODES})
    for name in names:
        if name in SPOOF_TYPE_CODES:
            codes[name] = SPOOF_TYPE_CODES[name]
    codes.update({name: FIRST_EXTRA_CODE + i for i, name in enumerate(extra)})
    return {n: codes[n] for n in sorted(set(names) | {"live"}, key=lambda n: codes[n])}


# ---------------------------------------------------------------------------
# listing the images of a set


def list_folder(root: Path, subject_level: bool, type_level: bool, tally: Tally) -> tuple[list[dict], dict]:
    """Every image under `root` in the folder layout: [{path, label, attack, subject}], and what else was found.

    Paths that do not fit the layout are `malformed_label` (the set's label is its folder);
    folders that are symbolic links leaving the root are `unsafe_path` (never listed).
    Box files and other non-image files are not images: they are counted, not listed.
    """
    if not root.is_dir():
        raise DataError(f"external test set root {root} is not a folder (external_tests.<name>.root)")
    guard = RootGuard(root)
    entries, misplaced, unsafe_dirs = [], [], []
    other = Counter()
    seen_dirs: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen_dirs:  # a link back to a folder already walked: no loops, no double counting
            dirs[:] = []
            continue
        seen_dirs.add(real)
        relative_folder = Path(folder).relative_to(root).as_posix()
        keep = []
        for d in sorted(dirs):
            rel = d if relative_folder == "." else f"{relative_folder}/{d}"
            if guard.resolve(rel) is None:
                unsafe_dirs.append(rel + "/")
            else:
                keep.append(d)
        dirs[:] = keep
        for name in sorted(files):
            rel = name if relative_folder == "." else f"{relative_folder}/{name}"
            if name.endswith(BOX_SUFFIX):
                other["box_files"] += 1
                continue
            if not name.lower().endswith(IMAGE_SUFFIXES):
                other["not_images"] += 1
                continue
            entry = _folder_entry(rel, subject_level, type_level)
            (entries if entry else misplaced).append(entry or rel)
    tally.add("unsafe_path", sorted(unsafe_dirs), detail="folders whose real path leaves the root")
    tally.add("malformed_label", sorted(misplaced), detail=f"not live/{'<subject>/' * subject_level}<image> or "
              f"spoof/{'<type>/' * type_level}{'<subject>/' * subject_level}<image>")
    layout = {"subject_level": subject_level, "type_level": type_level, **{k: int(v) for k, v in sorted(other.items())}}
    return sorted(entries, key=lambda e: e["path"]), layout


def _folder_entry(rel: str, subject_level: bool, type_level: bool) -> dict | None:
    parts = rel.split("/")
    kind = parts[0]
    depth = 2 + int(subject_level) + int(type_level and kind == "spoof")
    if kind not in ("live", "spoof") or len(parts) != depth:
        return None
    attack = "live" if kind == "live" else (parts[1] if type_level else UNSPECIFIED_ATTACK)
    if attack == "live" and kind == "spoof":
        return None  # spoof/live/ would contradict itself
    subject = parts[-2] if subject_level else None
    return {"path": rel, "label": int(kind == "spoof"), "attack": attack, "subject": subject}


def read_table(path: Path) -> pl.DataFrame:
    """The table of a table set (CSV or parquet), with its columns checked."""
    if not path.is_file():
        raise DataError(f"external test table {path} not found (external_tests.<name>.table)")
    try:
        table = pl.read_parquet(path) if path.suffix.lower() == ".parquet" else pl.read_csv(path, infer_schema_length=None)
    except Exception as exc:  # polars raises several exception types for bad files
        raise DataError(f"external test table {path} is not a readable CSV or parquet file ({exc})") from exc
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise DataError(f"external test table {path}: missing column(s) {missing} (have {table.columns})")
    return table


def list_table(table: pl.DataFrame, source: str, with_boxes: bool, tally: Tally) -> list[dict]:
    """[{path, label, attack, subject, box}] of a table set; malformed rows, unsafe and repeated paths counted."""
    if with_boxes:
        absent = [c for c in BOX_COLUMNS if c not in table.columns]
        if absent:
            raise DataError(f"{source}: boxes: columns needs the box column(s) {absent}")
    rows = table.to_dicts()
    entries, malformed, unsafe, repeated, seen = [], [], [], [], set()
    for row in rows:
        path = row["path"]
        if not isinstance(path, str) or not path:
            malformed.append(repr(path))
            continue
        if pl.Series([path]).str.contains(UNSAFE_PATH).item():
            unsafe.append(path)
            continue
        entry = _table_entry(row, "subject_id" in table.columns)
        if entry is None:
            malformed.append(path)
            continue
        if path in seen:
            repeated.append(path)
            continue
        seen.add(path)
        if with_boxes:
            entry["box"] = tuple(row[c] for c in BOX_COLUMNS)
        entries.append(entry)
    tally.add("unsafe_path", unsafe, detail="absolute, or leaving the root with '..'")
    tally.add("malformed_label", malformed, detail="label not 0/1/live/spoof, a spoof type contradicting it, or no subject_id")
    tally.add("duplicate_path", repeated)
    return sorted(entries, key=lambda e: e["path"])


def _table_entry(row: Mapping, has_subjects: bool) -> dict | None:
    label = _label_value(row["label"])
    if label is None:
        return None
    attack = _attack_value(row.get("spoof_type"), label)
    if attack is None:
        return None
    subject = row.get("subject_id")
    if has_subjects and (subject is None or str(subject) == ""):
        return None
    return {"path": row["path"], "label": label, "attack": attack, "subject": None if subject is None else str(subject)}


def _label_value(value) -> int | None:
    text = str(value).strip().lower() if value is not None else ""
    return {"0": 0, "1": 1, "live": 0, "spoof": 1, "0.0": 0, "1.0": 1}.get(text)


def _attack_value(value, label: int) -> str | None:
    """The attack name of a row: 'live', a CelebA-Spoof name (also from its code) or the set's own name."""
    if value is None or str(value).strip() == "":
        return "live" if label == 0 else UNSPECIFIED_ATTACK
    text = str(value).strip().lower()
    if text.removesuffix(".0").isdigit():
        code = int(text.removesuffix(".0"))
        if code not in SPOOF_TYPES:
            return None
        text = SPOOF_TYPES[code]
    if (text == "live") != (label == 0):
        return None
    return text


# ---------------------------------------------------------------------------
# reading each image and its box


def locate_face(guard: RootGuard, entry: Mapping, boxes: str, box_units: str) -> dict:
    """Facts about one image: status (ok / unsafe_path / missing_image / unreadable_image), size, box and its status.

    Nothing whose real path leaves the root is opened. The box is in pixels of the image.
    """
    image = guard.resolve(entry["path"])
    if image is None:
        return {"status": "unsafe_path"}
    if not os.path.isfile(image):
        return {"status": "missing_image"}
    try:
        with Image.open(image) as im:
            width, height = im.size
            if exceeds_pixel_limit(width, height):
                return {"status": "unreadable_image"}
            if boxes == "detector":
                im.load()  # the detector needs pixels: a truncated file fails here
                return {"status": "ok", "width": width, "height": height, **_detected(im)}
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return {"status": "unreadable_image"}
    facts = {"status": "ok", "width": width, "height": height}
    if boxes == "none":
        return {**facts, "box": "none"}
    if boxes == "columns":
        given = entry.get("box")
        if given is None or any(v is None for v in given):
            return {**facts, "box": "missing"}
        try:
            values = tuple(float(v) for v in given)
        except (TypeError, ValueError):
            return {**facts, "box": "malformed"}
        box = values + (math.nan,) if all(math.isfinite(v) for v in values) else None
    else:
        bb = guard.resolve(posixpath.splitext(entry["path"])[0] + BOX_SUFFIX)
        if bb is None:
            return {"status": "unsafe_path"}
        if not os.path.isfile(bb):
            return {**facts, "box": "missing"}
        try:
            with open(bb, encoding="utf-8", errors="replace") as fh:
                box = parse_box(fh.read(4096))
        except OSError:
            box = None
    if box is None:
        return {**facts, "box": "malformed"}
    pixels = box_in_pixels(_to_frame(box, width, height, box_units), width, height)
    if pixels is None:
        return {**facts, "box": "bad"}
    return {**facts, "box": "ok", "pixels": pixels, "score": box[4]}


def _to_frame(box: tuple, width: int, height: int, units: str) -> tuple:
    """A box in the 224 frame that fasflow.ingest.box_in_pixels converts and clips."""
    if units == "frame224":
        return box
    x, y, w, h = box[:4]
    return (x * FRAME / width, y * FRAME / height, w * FRAME / width, h * FRAME / height)


def _detected(image: Image.Image) -> dict:
    from .infer import detect_faces

    found = detect_faces(image.convert("RGB"))
    if not found:
        return {"box": "no_face"}
    return {"box": "detector", "pixels": found[0], "score": math.nan, "faces_found": len(found)}


# ---------------------------------------------------------------------------
# ingest


def ingest_external(name: str, spec: Mapping, policies: Mapping[str, str], threads: int = 1) -> tuple[pl.DataFrame, dict]:
    """One external set -> (images table in the face cache's manifest format, report). Raises DataError on `fail`.

    `spec` is the set's section of `external_tests`; `policies` the `ingest` section.
    """
    root = Path(spec["root"])
    tally = Tally(dict(policies))
    if spec["format"] == "folder":
        entries, layout = list_folder(root, spec["subject_level"], spec["type_level"], tally)
        subjects_known = bool(spec["subject_level"])
        source = str(root)
    else:
        table_path = Path(spec["table"])
        table = read_table(table_path)
        entries = list_table(table, str(table_path), spec["boxes"] == "columns", tally)
        layout = {"columns": table.columns}
        subjects_known = "subject_id" in table.columns
        source = str(table_path)
        if not root.is_dir():
            raise DataError(f"external test set {name}: root {root} (the folder the table's paths are relative to) is not a folder")
    listed = len(entries) + sum(tally.counts.values())
    guard = RootGuard(root)
    # OpenCV's cascade is one shared object and not documented as thread-safe: detect one image at a time.
    workers = 1 if spec["boxes"] == "detector" else max(1, int(threads))
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        facts = list(pool.map(lambda e: locate_face(guard, e, spec["boxes"], spec["box_units"]), entries))
    for reason in ("unsafe_path", "missing_image", "unreadable_image"):
        tally.add(reason, [e["path"] for e, f in zip(entries, facts) if f["status"] == reason])
    dropped = set()
    for reason, kind in (("bb_missing", "missing"), ("bb_malformed", "malformed"), ("bb_bad", "bad"), ("no_face", "no_face")):
        hit = [e["path"] for e, f in zip(entries, facts) if f.get("box") == kind]
        tally.add(reason, hit)
        if tally.action(reason) == "skip":
            dropped.update(hit)
    usable = [(e, f) for e, f in zip(entries, facts) if f["status"] == "ok" and e["path"] not in dropped]
    if not usable:
        raise DataError(
            f"external test set {name}: no usable image in {source} (found {listed}; problems {dict(sorted(tally.counts.items()))}; "
            f"policies {tally.policies})"
        )
    codes = attack_codes([e["attack"] for e, _ in usable])
    rows = []
    for e, f in usable:
        pixels = f.get("pixels") or (None, None, None, None)
        rows.append(
            {
                "path": e["path"],
                # Without subjects every image is its own cluster: the bootstrap is then image level.
                "subject_id": e["subject"] if subjects_known else e["path"],
                "label": e["label"],
                "spoof_type": codes[e["attack"]],
                "attack": e["attack"],
                "width": f["width"],
                "height": f["height"],
                **dict(zip(BOX_COLUMNS, pixels)),
                "box_score": f.get("score"),
                "box_status": f["box"],
            }
        )
    images = pl.DataFrame(rows, schema=SCHEMA).sort("path")
    report = {
        "name": name,
        "format": spec["format"],
        "root": str(root),
        "table": spec["table"],
        "layout": layout,
        "boxes": spec["boxes"],
        "box_units": spec["box_units"],
        "listed": listed,
        "usable": images.height,
        "skipped_or_flagged": dict(sorted(tally.counts.items())),
        "policies": {reason: tally.action(reason) for reason in POLICY_KEYS},
        "examples": {k: v for k, v in sorted(tally.examples.items())},
        "box_status": dict(sorted(Counter(images["box_status"].to_list()).items())),
        "several_faces_found": sum(1 for _, f in usable if f.get("faces_found", 1) > 1),
        "subjects_known": subjects_known,
        "subjects": images["subject_id"].n_unique() if subjects_known else None,
        "live": int((images["label"] == 0).sum()),
        "spoof": int((images["label"] == 1).sum()),
        "attack_types": {
            attack: {"code": code, "images": int((images["attack"] == attack).sum())} for attack, code in codes.items()
        },
    }
    return images, report


# ---------------------------------------------------------------------------
# the cross-dataset table

THRESHOLD_RULES = {
    "val_eer": "EER threshold of the model's CelebA-Spoof validation scores",
    "paper": f"the paper's {DECISION_THRESHOLD:g}",
    "oracle_eer": "EER threshold of the external set itself (oracle: chosen on the scores it is judged on, optimistic)",
}
TABLE_METRICS = ("apcer", "bpcer", "acer", "apcer_pais", "acer_iso", "accuracy")


def _arrays(df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        df["label"].to_numpy().astype(np.int64),
        df["score"].cast(pl.Float64).to_numpy(),
        df["subject_id"].cast(pl.Utf8).to_numpy(),
        df["spoof_type"].fill_null(-1).to_numpy().astype(np.int64),
    )


def _finite(value) -> float:
    return math.nan if value is None else float(value)


def cross_dataset_rows(
    external: pl.DataFrame,
    val: pl.DataFrame,
    celeba_test: pl.DataFrame,
    subjects_known: bool,
    attack_names: Mapping[int, str],
    n_resamples: int,
    seed: int,
    level: float,
) -> list[dict]:
    """One row per threshold rule (THRESHOLD_RULES) for one model on one external set.

    `val` and `celeba_test` are the model's CelebA-Spoof validation and test predictions: the
    validation scores fix the `val_eer` threshold, and the test error at the same threshold is
    the in-domain value the external one is compared with.
    """
    from .metrics import bootstrap_intervals, eer, metrics_at_threshold, roc_auc

    labels, scores, clusters, types = _arrays(external)
    v_labels, v_scores, _, _ = _arrays(val)
    t_labels, t_scores, _, t_types = _arrays(celeba_test)
    val_eer, val_threshold = eer(v_labels, v_scores)
    if math.isnan(val_threshold):
        raise DataError("CelebA-Spoof validation predictions need live and spoof images to fix an EER threshold")
    oracle_eer, oracle_threshold = eer(labels, scores)
    auc = roc_auc(labels, scores)
    thresholds = {"val_eer": val_threshold, "paper": DECISION_THRESHOLD, "oracle_eer": oracle_threshold}
    rows = []
    for rule, threshold in thresholds.items():
        point = metrics_at_threshold(labels, scores, threshold, types) if not math.isnan(threshold) else {}
        worst = max(point.get("apcer_per_type", {}).items(), key=lambda kv: _finite(kv[1]), default=(None, None))[0]
        intervals = (
            bootstrap_intervals(labels, scores, clusters, types, threshold=threshold, n_resamples=n_resamples, seed=seed, level=level)
            if n_resamples > 0 and not math.isnan(threshold)
            else {}
        )
        in_domain = metrics_at_threshold(t_labels, t_scores, threshold, t_types) if not math.isnan(threshold) else {}
        row = {
            "threshold_rule": rule,
            "threshold": threshold,
            "threshold_source": THRESHOLD_RULES[rule],
            "ci_unit": "subject" if subjects_known else "image",
            "ci_clusters": int(len(np.unique(clusters))),
            "n_images": int(len(labels)),
            "n_live": int(np.sum(labels == 0)),
            "n_spoof": int(np.sum(labels == 1)),
        }
        for metric in TABLE_METRICS:
            row[metric] = _finite(point.get(metric))
            lo, hi = intervals.get(metric, (None, None))
            row[f"{metric}_ci_lo"], row[f"{metric}_ci_hi"] = _finite(lo), _finite(hi)
        row["worst_attack"] = attack_names.get(_code_of(worst), worst) if worst else None
        row["roc_auc"] = auc
        row["roc_auc_ci_lo"], row["roc_auc_ci_hi"] = (_finite(v) for v in intervals.get("roc_auc", (None, None)))
        row["external_eer"] = oracle_eer
        row["val_eer"] = val_eer
        row["celeba_test_apcer"] = _finite(in_domain.get("apcer"))
        row["celeba_test_bpcer"] = _finite(in_domain.get("bpcer"))
        row["celeba_test_acer"] = _finite(in_domain.get("acer"))
        rows.append(row)
    return rows


def _code_of(type_name: str) -> int | None:
    """The code fasflow.metrics.type_name gave a name ('photo' -> 1, 'type_12' -> 12)."""
    if type_name in SPOOF_TYPE_CODES:
        return SPOOF_TYPE_CODES[type_name]
    tail = type_name.removeprefix("type_")
    return int(tail) if tail.lstrip("-").isdigit() else None


def _cell(row: Mapping, metric: str) -> str:
    from .tables import fmt_ci

    lo, hi = row[f"{metric}_ci_lo"], row[f"{metric}_ci_hi"]
    return fmt_ci(row[metric], None if math.isnan(lo) else lo, None if math.isnan(hi) else hi)


def cross_dataset_table(rows: Sequence[Mapping]) -> pl.DataFrame:
    """The Markdown view: one line per set and model, the deployable threshold first, the oracle last."""
    from .tables import fmt

    by_key: dict[tuple, dict] = {}
    for r in rows:
        by_key.setdefault((r["set"], r["model"]), {})[r["threshold_rule"]] = r
    text = []
    for (set_name, model), rules in by_key.items():
        val, paper, oracle = rules["val_eer"], rules["paper"], rules["oracle_eer"]
        text.append(
            {
                "Set": set_name,
                "Model": model,
                "Live / spoof": f"{val['n_live']} / {val['n_spoof']}",
                "CI over": f"{val['ci_clusters']} {val['ci_unit']}s",
                "ROC-AUC": _cell(val, "roc_auc"),
                "Threshold (CelebA val EER)": fmt(val["threshold"]),
                "APCER": _cell(val, "apcer"),
                "BPCER": _cell(val, "bpcer"),
                "ACER": _cell(val, "acer"),
                "CelebA-Spoof test ACER (same threshold)": fmt(val["celeba_test_acer"]),
                f"ACER at {DECISION_THRESHOLD:g}": _cell(paper, "acer"),
                "Oracle: external EER (threshold)": f"{fmt(oracle['external_eer'])} ({fmt(oracle['threshold'])})",
            }
        )
    return pl.DataFrame(text)


def write_cross_dataset(
    external: Mapping[str, Mapping[str, str]],
    val: Mapping[str, str],
    celeba_test: Mapping[str, str],
    reports: Mapping[str, str],
    n_resamples: int,
    seed: int,
    level: float,
    csv,
    md,
    figure_paths: Sequence = (),
) -> pl.DataFrame:
    """Cross-dataset table (CSV: every threshold rule; Markdown: one line per set and model) and ROC figure.

    `external` maps set -> model -> external predictions; `val` and `celeba_test` map model ->
    CelebA-Spoof validation / test predictions; `reports` maps set -> its ingest report.
    """
    from .metrics import read_predictions
    from .tables import write_table

    rows, curves = [], {}
    info = {s: io.read_json(p) for s, p in reports.items()}
    val_frames = {m: read_predictions(p) for m, p in val.items()}
    test_frames = {m: read_predictions(p) for m, p in celeba_test.items()}
    for set_name, per_model in external.items():
        report = info[set_name]
        names = {v["code"]: k for k, v in report["attack_types"].items()}
        for model, path in per_model.items():
            frame = read_predictions(path)
            for row in cross_dataset_rows(
                frame, val_frames[model], test_frames[model], report["subjects_known"], names, n_resamples, seed, level
            ):
                rows.append({"set": set_name, "model": model, **row})
            curves.setdefault(set_name, {})[model] = frame
    numbers = pl.DataFrame(rows, infer_schema_length=None)
    units = sorted({f"{s}: {'subject' if r['subjects_known'] else 'image'} level" for s, r in info.items()})
    skipped = "; ".join(
        f"{s}: {r['usable']} of {r['listed']} images usable"
        + (", flagged " + ", ".join(f"{k} {v}" for k, v in r["skipped_or_flagged"].items()) if r["skipped_or_flagged"] else ", no problems")
        for s, r in info.items()
    )
    note = (
        f"Thresholds a deployment would have: the EER threshold of each model's CelebA-Spoof validation scores (main columns) "
        f"and the paper's {DECISION_THRESHOLD:g}; the last column is the oracle, the EER of the external set at its own EER "
        f"threshold, chosen on the scores it is judged on (optimistic, not deployable). The CelebA-Spoof test ACER at the same "
        f"validation threshold is the in-domain value to compare with. ACER = (pooled APCER + BPCER) / 2, spoof positive. "
        f"{level:.0%} percentile bootstrap intervals ({n_resamples} resamples), {', '.join(units)} (image level = subjects "
        f"unknown, every image its own cluster: narrower than a subject-level interval would be). Ingest: {skipped}. "
        "The CSV has every threshold rule, APCER_PAIS (worst attack named) and ACER_ISO."
    )
    write_table(numbers, cross_dataset_table(rows), csv, md, title="Cross-dataset test (thresholds fixed on CelebA-Spoof validation)", note=note)
    if figure_paths:
        cross_dataset_figure(curves, test_frames, numbers, figure_paths)
    return numbers


def cross_dataset_figure(curves: Mapping[str, Mapping[str, pl.DataFrame]], celeba_test: Mapping[str, pl.DataFrame], numbers: pl.DataFrame, paths: Sequence) -> None:
    """ROC per set (CelebA-Spoof test first, for reference), a curve per model; the dot is the validation-EER threshold."""
    from sklearn.metrics import roc_curve

    from .figures import plt, save_figure
    from .metrics import metrics_at_threshold, roc_auc

    panels = {"CelebA-Spoof test (in domain)": celeba_test, **curves}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.3), squeeze=False)
    thresholds = {
        (r["set"], r["model"]): r["threshold"] for r in numbers.filter(pl.col("threshold_rule") == "val_eer").iter_rows(named=True)
    }
    for ax, (title, frames) in zip(axes[0], panels.items()):
        for i, (model, df) in enumerate(frames.items()):
            y, s = df["label"].to_numpy(), df["score"].cast(pl.Float64).to_numpy()
            if len(np.unique(y)) < 2:
                continue
            fpr, tpr, _ = roc_curve(y, s)
            colour = f"C{i % 10}"
            ax.plot(fpr, tpr, color=colour, label=f"{model} (AUC {roc_auc(y, s):.3f})")
            threshold = thresholds.get((title, model), next((t for (_, m), t in thresholds.items() if m == model), None))
            if threshold is not None:
                m = metrics_at_threshold(y, s, threshold)
                ax.plot(m["bpcer"], 1 - m["apcer"], "o", color=colour, markersize=6)
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("BPCER (live rejected)")
        ax.set_title(title, fontsize=10)
        ax.legend(frameon=False, fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("1 - APCER (spoof detected)")
    fig.suptitle("ROC per test set; dots: the threshold fixed on CelebA-Spoof validation (EER)")
    fig.tight_layout()
    save_figure(fig, paths)


# ---------------------------------------------------------------------------
# a synthetic external set in another capture style (the demo's domain shift)

# How the shifted set is captured, next to the demo's training data (fasflow.synth: 64-160 px,
# JPEG quality 92 or PNG, neutral colour on average, sharp): smaller source images upscaled
# 2-3x (soft), a warm colour temperature, gamma, defocus blur, stronger sensor noise, a
# vignette and heavy JPEG compression.
SOURCE_SIZE_RANGE = (48, 96)
UPSCALE = (2.0, 3.0)
WARM_CAST = (1.12, 1.0, 0.80)  # white balance of a tungsten-lit room
CAST_JITTER = 0.05
GAMMA = (0.75, 1.3)
BLUR_RADIUS = (0.6, 1.6)
NOISE_SIGMA = (4.0, 10.0)
VIGNETTE = (0.25, 0.55)  # darkening at the corners
JPEG_QUALITY = (30, 65)


def write_shifted_set(root: str | os.PathLike, n_subjects: int, images_per_subject: int, seed: int) -> dict:
    """A folder-layout external set at `root` (live/<subject>/, spoof/<type>/<subject>/, pixel _BB.txt files).

    Faces and attacks are fasflow.synth's (new identities from `seed`), captured in another style
    (see the constants above). Deterministic for a seed. `root` must be absent, empty or an
    earlier shifted set (its EXTERNAL.json); the set is built beside it and moved into place,
    EXTERNAL.json (parameters and counts) last.
    """
    from . import synth

    root = Path(root)
    generated = (root / MARKER).is_file() or (root / SENTINEL).is_file()
    if root.exists() and not generated and any(root.iterdir()):
        raise DataError(f"{root} holds files but no {MARKER}: refusing to overwrite what may be a real test set")
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        source = work / "source"
        synth.generate(source, n_subjects, images_per_subject, seed, size_range=SOURCE_SIZE_RANGE, test_fraction=0.0)
        out = work / "set"
        counts: Counter = Counter()
        labels = {}
        for part in ("train", "test"):
            labels.update(io.read_json(source / synth.LABEL_DIR / f"{part}_label.json"))
        for index, (rel, vector) in enumerate(sorted(labels.items())):
            spoof_type = int(vector[40])
            subject = rel.split("/")[2]
            folder = "live" if spoof_type == 0 else f"spoof/{SPOOF_TYPES[spoof_type]}"
            stem = Path(rel).stem
            target = out / folder / f"s{subject}" / f"{stem}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            box = parse_box((source / rel).with_name(f"{stem}{BOX_SUFFIX}").read_text())
            with Image.open(source / rel) as image:
                pixels = box_in_pixels(box, *image.size)
                shifted, scaled, quality = recapture(image.convert("RGB"), pixels, np.random.default_rng([seed, 17, index]))
            shifted.save(target, format="JPEG", quality=quality, subsampling=2, optimize=False)
            target.with_name(f"{stem}{BOX_SUFFIX}").write_text(" ".join(f"{v:.1f}" for v in scaled) + " 1.0\n")
            counts["live" if spoof_type == 0 else "spoof"] += 1
        (out / SENTINEL).write_text("written by fasflow.external.write_shifted_set; safe to replace\n")
        params = {"n_subjects": n_subjects, "images_per_subject": images_per_subject, "seed": seed}
        io.write_json(out / MARKER, {"generator": "fasflow.external.write_shifted_set", "params": params, "counts": dict(counts)})
        if root.exists():
            shutil.rmtree(root)
        os.replace(out, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dict(counts)


def recapture(image: Image.Image, box: tuple[float, float, float, float] | None, rng: np.random.Generator) -> tuple[Image.Image, tuple, int]:
    """One image in the shifted capture style, its face box (pixels) in the new image's frame, and the JPEG quality to save it with."""
    factor = float(rng.uniform(*UPSCALE))
    size = (max(16, round(image.width * factor)), max(16, round(image.height * factor)))
    image = image.resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(float(rng.uniform(*BLUR_RADIUS))))
    scaled = tuple(v * factor for v in box) if box else (0.0, 0.0, float(size[0]), float(size[1]))
    x = np.asarray(image, dtype=np.float32) / 255.0
    cast = np.asarray(WARM_CAST, dtype=np.float32) * rng.uniform(1 - CAST_JITTER, 1 + CAST_JITTER, 3).astype(np.float32)
    x = np.clip(x * cast, 0.0, 1.0) ** float(rng.uniform(*GAMMA))
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    corner = (((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2) / 2.0  # 0 at the centre, 1 in the corners
    x = x * (1.0 - float(rng.uniform(*VIGNETTE)) * corner[..., None])
    x = x * 255.0 + rng.normal(0.0, float(rng.uniform(*NOISE_SIGMA)), size=x.shape).astype(np.float32)
    shifted = Image.fromarray(np.clip(np.round(x), 0, 255).astype(np.uint8))
    return shifted, scaled, int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
