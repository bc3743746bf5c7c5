"""Data stages as functions of (config section, paths): what the data rules and CLI call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from . import io
from .faces import build_face_cache
from .ingest import ingest
from .runlog import get_logger
from .splits import SPLITS, choose_subset, split_report, split_subjects


def run_ingest(root, label_files, policies, check_files, threads, images_out, report_out) -> dict:
    log = get_logger()
    log.info("ingest: reading %s under %s", ", ".join(label_files), root)
    table, report = ingest(root, label_files, policies, check_files=check_files, threads=threads)
    io.write_parquet(images_out, table)
    io.write_json(report_out, report)
    log.info("ingest: %d listed, %d usable; flagged %s", report["listed"], report["usable"], report["skipped_or_flagged"])
    return report


def run_subset_and_split(images_path, n_images, subset_seed, fractions, split_seed, split_paths: dict, report_out) -> dict:
    log = get_logger()
    images = pl.read_parquet(images_path)
    subset = choose_subset(images, n_images, subset_seed)
    splits = split_subjects(subset, fractions, split_seed)  # raises before anything is written
    report = split_report(splits, fractions)
    for name in SPLITS:
        io.write_parquet(split_paths[name], splits[name])
    io.write_json(report_out, report)
    for name in SPLITS:
        s = report["splits"][name]
        log.info("split %s: %d images, %d subjects, %d live, %d spoof", name, s["images"], s["subjects"], s["live"], s["spoof"])
    return report


def run_face_cache(manifest_path, root, margin, size, threads, faces_out) -> np.ndarray:
    log = get_logger()
    manifest = pl.read_parquet(manifest_path)
    whole = int(manifest["box_x"].is_null().sum())
    log.info("faces: cropping %d images of %s to %dpx (%d without a usable box use the whole image)", manifest.height, Path(manifest_path).name, size, whole)
    faces = build_face_cache(manifest, root, margin, size, threads=threads)
    io.write_npy(faces_out, faces)
    return faces
