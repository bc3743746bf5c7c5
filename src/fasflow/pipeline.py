"""Data stages as functions of (config section, paths): what the data rules and CLI call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from . import io
from .faces import build_face_cache
from .ingest import ingest
from .runlog import get_logger
from .splits import PAPER_PROTOCOL, run_split


def run_ingest(root, label_files, policies, check_files, threads, images_out, report_out) -> dict:
    log = get_logger()
    log.info("ingest: reading %s under %s", ", ".join(label_files), root)
    table, report = ingest(root, label_files, policies, check_files=check_files, threads=threads)
    io.write_parquet(images_out, table)
    io.write_json(report_out, report)
    log.info("ingest: %d listed, %d usable; flagged %s", report["listed"], report["usable"], report["skipped_or_flagged"])
    return report


def run_subset_and_split(images_path, n_images, subset_seed, fractions, split_seed, split_paths: dict, report_out) -> dict:
    """The split rule's current call: the paper protocol with the schema's default `subset.unit` ('image').

    Kept until the rule calls `fasflow.splits.run_split` with `dataset.protocol` and the `subset`
    and `split` config sections; then it can go.
    """
    subset = {"n_images": n_images, "seed": subset_seed, "unit": "image"}
    return run_split(images_path, PAPER_PROTOCOL, subset, {"fractions": fractions, "seed": split_seed}, split_paths, report_out)


def run_face_cache(manifest_path, root, margin, size, threads, faces_out) -> np.ndarray:
    log = get_logger()
    manifest = pl.read_parquet(manifest_path)
    whole = int(manifest["box_x"].is_null().sum())
    log.info("faces: cropping %d images of %s to %dpx (%d without a usable box use the whole image)", manifest.height, Path(manifest_path).name, size, whole)
    faces = build_face_cache(manifest, root, margin, size, threads=threads)
    io.write_npy(faces_out, faces)
    return faces
