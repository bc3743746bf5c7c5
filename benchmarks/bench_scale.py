"""Scale rehearsal: ingest, protocol split and face cache on a CelebA-Spoof-format tree, at two sizes.

Builds a tree with metas/intra_test/{train,test}_label.json listing N images (a few hundred
distinct small JPEG/PNG files and box files, hard-linked under N names, so it is built in seconds
and takes little disk), then runs each stage in its own process and prints its wall time,
images/s and peak resident memory (the child's ru_maxrss), for two sizes and their ratios.
The split is `fasflow.splits.split_official_protocol` where the package has it (else test = the
test file, train = the train file); the face cache is that of the train split.

Targets (issue 13): the face cache's peak RSS differs by < 20% between the two sizes (one at
least 4x the other); time grows about linearly with N.
Usage: python benchmarks/bench_scale.py [--quick] [--sizes 25000 100000] [--face-size 64]
       [--threads 2] [--baseline]   (--quick: 5,000 and 20,000 images; also FASFLOW_BENCH_QUICK=1)
--baseline also times the old in-memory face cache (one array of all faces, then np.save).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

TARGET_RSS_SPREAD = 0.20
DISTINCT_IMAGES = 300  # distinct files per official part; every label entry links to one of them
IMAGES_PER_SUBJECT = 61  # CelebA-Spoof: 625,537 images / 10,177 subjects
TEST_SHARE = 0.12  # intra_test: 67,170 of 561,575 labelled images
POLICIES = {"on_unreadable_image": "skip", "on_missing_image": "skip", "on_unsafe_path": "fail"}


def build_tree(root: Path, n: int, seed: int = 0) -> None:
    """A CelebA-Spoof-format tree of n labelled images under root (hard links to a small pool)."""
    from PIL import Image

    from fasflow.synth import _write_labels

    rng = np.random.default_rng(seed)
    pool = root / "pool"
    pool.mkdir(parents=True)
    sources = {}
    for part, ext in (("train", "jpg"), ("test", "png")):
        sources[part] = []
        for i in range(DISTINCT_IMAGES):
            w, h = (int(v) for v in rng.integers(140, 260, size=2))
            coarse = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
            pixels = np.kron(coarse, np.ones((8, 8, 1), np.uint8))[:h, :w]
            image = pool / f"{part}{i}.{ext}"
            Image.fromarray(np.ascontiguousarray(pixels)).save(image, **({"quality": 90} if ext == "jpg" else {}))
            x, y = rng.integers(30, 80, size=2)
            side = int(rng.integers(60, 110))
            box = pool / f"{part}{i}_BB.txt"
            box.write_text(f"{x} {y} {side} {side} 0.99\n")
            sources[part].append((image, box))
    n_subjects = max(3, n // IMAGES_PER_SUBJECT)
    subject_ids = rng.choice(np.arange(1, 10 * n_subjects + 1), size=n_subjects, replace=False)
    test_subjects = set(subject_ids[: max(1, round(TEST_SHARE * n_subjects))].tolist())
    subject_of = np.sort(rng.choice(subject_ids, size=n))
    spoof = rng.random(n) < 2 / 3
    types = np.where(spoof, rng.integers(1, 11, size=n), 0)
    labels = {"train": {}, "test": {}}
    made = set()
    for i in range(n):
        subject = int(subject_of[i])
        part = "test" if subject in test_subjects else "train"
        kind = "spoof" if spoof[i] else "live"
        folder = root / "Data" / part / str(subject) / kind
        if folder not in made:
            folder.mkdir(parents=True)
            made.add(folder)
        image, box = sources[part][i % DISTINCT_IMAGES]
        name = f"{i:06d}"
        os.link(image, folder / f"{name}{image.suffix}")
        os.link(box, folder / f"{name}_BB.txt")
        vector = [0] * 40 + [int(types[i]), 1 if spoof[i] else 0, 1 if spoof[i] else 0, int(spoof[i])]
        labels[part][f"Data/{part}/{subject}/{kind}/{name}{image.suffix}"] = vector
    for part in ("train", "test"):
        _write_labels(root / "metas" / "intra_test" / f"{part}_label.json", labels[part])


# ----------------------------------------------------------------------------- stages (child processes)


def stage(name: str, root: Path, work: Path, threads: int, face_size: int) -> dict:
    """Run one stage in this process; return what it processed."""
    from fasflow import io
    from fasflow.ingest import protocol_label_files

    if name == "ingest":
        from fasflow.ingest import ingest

        table, report = ingest(root, protocol_label_files("intra_test"), POLICIES, check_files=True, threads=threads)
        io.write_parquet(work / "images.parquet", table)
        io.write_json(work / "ingest.json", report)
        return {"images": report["listed"]}
    if name == "split":
        import polars as pl

        from fasflow import splits

        images = pl.read_parquet(work / "images.parquet")
        if hasattr(splits, "split_official_protocol"):  # the official-protocol split (issue 14)
            parts = splits.split_official_protocol(images, 0.1, 2024, None, "image", 2024)
        else:  # before it existed: test = the test file, train = the train file, no validation
            parts = {side: images.filter(pl.col("protocol_split") == side) for side in ("train", "test")}
        for side, frame in parts.items():
            io.write_parquet(work / f"{side}.parquet", frame)
        return {"images": images.height}
    if name == "face_cache":
        from fasflow.faces import write_face_cache

        report = write_face_cache(
            work / "train.parquet", root, 0.2, face_size, threads, POLICIES,
            work / "faces" / "train.npy", work / "faces" / "train.parquet", work / "faces" / "train.json",
        )
        return {"images": report["listed"], "cache_bytes": report["bytes"]}
    if name == "face_cache_in_memory":
        import polars as pl

        from fasflow.faces import build_face_cache

        manifest = pl.read_parquet(work / "train.parquet")
        io.write_npy(work / "faces_in_memory.npy", build_face_cache(manifest, root, 0.2, face_size, threads))
        return {"images": manifest.height}
    raise SystemExit(f"unknown stage {name}")


def run_stage(name: str, root: Path, work: Path, threads: int, face_size: int) -> dict:
    """Run a stage in a child process; its wall time and peak RSS come from wait4."""
    command = [sys.executable, __file__, "--stage", name, "--root", str(root), "--work", str(work),
               "--threads", str(threads), "--face-size", str(face_size)]  # fmt: skip
    out = work / f"{name}.result.json"
    started = time.perf_counter()
    child = subprocess.Popen(command + ["--result", str(out)])
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"bench_scale: stage {name} failed with exit code {child.returncode}")
    result = json.loads(out.read_text())
    return {**result, "wall_s": wall, "images_per_s": result["images"] / wall, "peak_rss_mib": usage.ru_maxrss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 and 20,000 images")
    parser.add_argument("--sizes", type=int, nargs=2, default=None, metavar=("SMALL", "LARGE"), help="default 25000 100000")
    parser.add_argument("--face-size", type=int, default=64, help="cached face side in px (default 64)")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--baseline", action="store_true", help="also run the old in-memory face cache")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        result = stage(args.stage, Path(args.root), Path(args.work), args.threads, args.face_size)
        Path(args.result).write_text(json.dumps(result))
        return 0

    quick = args.quick or os.environ.get("FASFLOW_BENCH_QUICK") == "1"
    sizes = args.sizes or ((5_000, 20_000) if quick else (25_000, 100_000))
    stages = ["ingest", "split", "face_cache"] + (["face_cache_in_memory"] if args.baseline else [])
    print(f"bench_scale: intra_test layout, face cache {args.face_size} px, {args.threads} thread(s), sizes {sizes[0]:,} and {sizes[1]:,}")
    results: dict[int, dict[str, dict]] = {}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="fasflow-bench-scale-") as tmp:
            root, work = Path(tmp) / "celeba", Path(tmp) / "work"
            work.mkdir()
            started = time.perf_counter()
            build_tree(root, n)
            print(f"  N={n:,}: tree built in {time.perf_counter() - started:.1f} s", flush=True)
            results[n] = {}
            for name in stages:
                r = results[n][name] = run_stage(name, root, work, args.threads, args.face_size)
                extra = f", cache {r['cache_bytes'] / 2**20:,.0f} MiB" if "cache_bytes" in r else ""
                print(f"  N={n:,} {name:21s} {r['images']:>8,} images  {r['wall_s']:7.2f} s  {r['images_per_s']:8.0f} images/s  "
                      f"peak RSS {r['peak_rss_mib']:7.1f} MiB{extra}", flush=True)
    small, large = sizes
    print(f"  ratios N={large:,} / N={small:,} (images x{large / small:.1f}):")
    for name in stages:
        a, b = results[small][name], results[large][name]
        print(f"    {name:21s} time x{b['wall_s'] / a['wall_s']:.2f}  peak RSS x{b['peak_rss_mib'] / a['peak_rss_mib']:.2f}")
    from fasflow.faces import CHUNK_BYTES

    chunk = CHUNK_BYTES // (args.face_size**2 * 3)
    if results[small]["face_cache"]["images"] < chunk:
        print(f"  note: the smaller cache ({results[small]['face_cache']['images']:,} faces) is less than one chunk ({chunk:,} faces "
              f"at {args.face_size} px), so its buffer is smaller too; choose sizes above one chunk to compare memory")
    spread = abs(results[large]["face_cache"]["peak_rss_mib"] / results[small]["face_cache"]["peak_rss_mib"] - 1)
    verdict = "OK" if spread < TARGET_RSS_SPREAD and large >= 4 * small else "MISSED"
    print(f"  face cache peak RSS differs by {100 * spread:.1f}% between the sizes (target < {100 * TARGET_RSS_SPREAD:.0f}%, sizes >= 4x apart): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
