"""The study's subset and its subject-disjoint splits, under the paper's protocol or an official one.

Subset (`subset.unit`):
- `image`: a seeded sample of images within each class, keeping the live:spoof ratio of the
  usable images (the paper's "60,000 images selected with a fixed random seed while preserving
  live-spoof distribution"); the subject-level separation comes from the split that follows.
- `subject`: whole subjects in seeded order until both class quotas are reached; the overshoot is
  trimmed as a seeded sample that never takes a subject's last image of a class, so no subject
  loses a class it has in the data.

Split: subjects in seeded random order, each assigned to the split whose image, live and
per-spoof-type counts fall furthest short of their targets. The choice depends on a subject's
composition (live and spoof-type shares), never on its size, so every split's identities are a
random draw of the subjects.

Official protocols (`dataset.protocol` other than `paper`): the test split is the protocol's test
file, whole; train and validation come from its train file, split by subject; a subject listed in
both files is dropped from train and validation so no identity crosses.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from .errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
SUBSET_UNITS = ("image", "subject")
PAPER_PROTOCOL = "paper"
N_SPOOF_TYPES = 11


# ---------------------------------------------------------------------------
# the subset


def class_quotas(images: pl.DataFrame, n_images: int) -> dict[int, int]:
    """Live (0) and spoof (1) image counts of an `n_images` subset with the images' live:spoof ratio."""
    n_live_all = int((images["label"] == 0).sum())
    quotas = {0: round(n_images * n_live_all / images.height)}
    quotas[1] = n_images - quotas[0]
    return quotas


def choose_subset(images: pl.DataFrame, n_images: int | None, seed: int, unit: str) -> pl.DataFrame:
    """The study's subset: `n_images` images (None: all of them) drawn with `seed` by `unit`.

    Both units keep the live:spoof ratio of `images` exactly (up to rounding one image). Rows come
    back sorted by path; the result depends only on the rows of `images`, not on their order.
    """
    if unit not in SUBSET_UNITS:
        raise ConfigError(f"subset.unit must be one of {', '.join(SUBSET_UNITS)}, got {unit!r}")
    images = images.sort("path", maintain_order=True)
    if n_images is None:
        return images
    if n_images > images.height:
        raise DataError(f"subset.n_images = {n_images} but only {images.height} usable images were ingested")
    quotas = class_quotas(images, n_images)
    rng = np.random.default_rng(seed)
    if unit == "image":
        return _sample_images(images, quotas, rng)
    return _sample_subjects(images, quotas, rng)


def _sample_images(images: pl.DataFrame, quotas: dict[int, int], rng: np.random.Generator) -> pl.DataFrame:
    """A seeded sample of images within each class: identities enter in proportion to their images."""
    labels = images["label"].to_numpy()
    chosen = [rng.choice(np.flatnonzero(labels == label), quota, replace=False) for label, quota in quotas.items()]
    return images[np.sort(np.concatenate(chosen))]


def _sample_subjects(images: pl.DataFrame, quotas: dict[int, int], rng: np.random.Generator) -> pl.DataFrame:
    """Whole subjects in seeded order until both class quotas are reached, then a seeded trim of the overshoot.

    Filling the two classes from separate lists (as a first version did) left subjects that gave
    only their live images; here a subject enters with all its images, and the trim keeps at least
    one image of each class a chosen subject has.
    """
    per_subject = (
        images.group_by("subject_id")
        .agg((pl.col("label") == 0).sum().alias("live"), (pl.col("label") == 1).sum().alias("spoof"))
        .sort("subject_id")
    )
    order = rng.permutation(per_subject.height)
    live = per_subject["live"].to_numpy()[order].cumsum()
    spoof = per_subject["spoof"].to_numpy()[order].cumsum()
    # First prefix of the seeded order that reaches both quotas (it exists: the quotas fit the data).
    enough = np.flatnonzero((live >= quotas[0]) & (spoof >= quotas[1]))[0] + 1
    chosen = per_subject["subject_id"].to_numpy()[order[:enough]]
    pool = images.filter(pl.col("subject_id").is_in(chosen.tolist()))
    # One image per (subject, class), drawn with the seed, is kept whatever the trim takes.
    pool = pool.with_columns(pl.Series("_key", rng.permutation(pool.height)))
    pool = pool.with_columns((pl.col("_key") == pl.col("_key").min().over("subject_id", "label")).alias("_reserved"))
    labels = pool["label"].to_numpy()
    reserved = pool["_reserved"].to_numpy()
    drop = []
    for label, quota in quotas.items():
        excess = int((labels == label).sum()) - quota
        removable = np.flatnonzero((labels == label) & ~reserved)
        if excess > removable.size:
            kind = "live" if label == 0 else "spoof"
            raise DataError(
                f"subset.n_images is too small for subset.unit 'subject': {quota} {kind} images cannot cover the "
                f"{int(((labels == label) & reserved).sum())} chosen subjects that have {kind} images; use subset.unit 'image' or more images"
            )
        drop.append(rng.choice(removable, excess, replace=False))
    keep = np.ones(pool.height, dtype=bool)
    keep[np.concatenate(drop)] = False
    return pool.filter(pl.Series(keep)).drop("_key", "_reserved")


# ---------------------------------------------------------------------------
# the subject-disjoint split


def split_subjects(subset: pl.DataFrame, fractions: Mapping[str, float], seed: int) -> dict[str, pl.DataFrame]:
    """Assign whole subjects to the splits named in `fractions` so images, live:spoof and spoof types match.

    Subjects are taken in seeded random order; each goes to the split that lowers the squared
    shortfall of all counts most. That choice is the split with the largest (weighted) shortfall
    along the subject's own count vector, so it does not depend on the subject's size: large and
    small subjects reach every split alike. A few pair swaps then correct the last subjects'
    overshoot (`_balance_by_swaps`).
    """
    names = tuple(fractions)
    per_subject = (
        subset.group_by("subject_id")
        .agg(
            pl.len().alias("n"),
            (pl.col("label") == 0).sum().alias("live"),
            *[(pl.col("spoof_type") == k).sum().alias(f"t{k}") for k in range(1, N_SPOOF_TYPES)],
        )
        .sort("subject_id")
    )
    if per_subject.height < len(names):
        raise DataError(f"need at least {len(names)} subjects to split into {', '.join(names)}, found {per_subject.height}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(per_subject.height)
    # One count vector per subject: images, live, then spoof types 1..10.
    features = per_subject.select("n", "live", *[f"t{k}" for k in range(1, N_SPOOF_TYPES)]).to_numpy().astype(float)[order]
    total = features.sum(axis=0)
    share = np.array([fractions[s] for s in names], dtype=float)
    targets = share[:, None] * total[None, :]
    # Images matter most; class and type balance next. Scale by totals so dimensions are comparable.
    weights = np.concatenate([[4.0, 2.0], np.ones(N_SPOOF_TYPES - 1)]) / np.maximum(total, 1.0) ** 2
    # Adding row r to split s changes the cost sum_d w_d (current - target)^2 by 2 sum_d w_d (current_sd - target_sd) r_d
    # plus a term that is the same for every split; the argmin of the first term is the best split.
    weighted_excess = -targets * weights
    assignment = np.empty(per_subject.height, dtype=np.int64)
    for i, row in enumerate(features):
        choice = int(np.argmin(weighted_excess @ row))
        assignment[i] = choice
        weighted_excess[choice] += row * weights
    _balance_by_swaps(features, assignment, targets, weights)
    for s, name in enumerate(names):
        if not (assignment == s).any():
            raise DataError(f"split '{name}' got no subject: too few subjects ({per_subject.height}) for the split fractions")
    subject_ids = per_subject["subject_id"].to_numpy()[order]
    mapping = pl.DataFrame({"subject_id": subject_ids, "_split": np.array(names, dtype=object)[assignment]}, schema={"subject_id": subset.schema["subject_id"], "_split": pl.String})
    labelled = subset.join(mapping, on="subject_id", how="left", maintain_order="left")
    result = {s: labelled.filter(pl.col("_split") == s).drop("_split").sort("path", maintain_order=True) for s in names}
    check_disjoint(result)
    return result


# Neighbours by image count examined per subject when looking for a swap partner.
SWAP_CANDIDATES = 8
MAX_SWAPS = 200


def _balance_by_swaps(features: np.ndarray, assignment: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> int:
    """Exchange pairs of subjects between splits while that lowers the squared shortfall; returns the swap count.

    The random-order assignment leaves each split off its targets by about the size of the last
    subjects it took. Swapping subject i (split a) with j (split b) moves delta = r_i - r_j from a
    to b and changes the cost by 2 sum_d w_d (delta_d g_d + delta_d^2), g = excess_b - excess_a;
    the best partners have r_j near r_i + g / 2 in images, so only the SWAP_CANDIDATES nearest
    image counts are scored. Swaps keep each split's subject count; few are needed, so the
    subjects of every split stay a random draw.
    """
    current = np.stack([features[assignment == s].sum(axis=0) for s in range(len(targets))])
    offsets = np.arange(-SWAP_CANDIDATES, SWAP_CANDIDATES)
    for swaps in range(MAX_SWAPS):
        excess = current - targets
        best_gain, best_pair = 0.0, None
        for a in range(len(targets)):
            for b in range(a + 1, len(targets)):
                members_a, members_b = np.flatnonzero(assignment == a), np.flatnonzero(assignment == b)
                if members_a.size == 0 or members_b.size == 0:
                    continue
                g = excess[b] - excess[a]
                by_size = members_b[np.argsort(features[members_b, 0], kind="stable")]
                wanted = features[members_a, 0] + g[0] / 2
                nearest = np.searchsorted(features[by_size, 0], wanted)
                partners = by_size[np.clip(nearest[:, None] + offsets[None, :], 0, by_size.size - 1)]
                delta = features[members_a][:, None, :] - features[partners]
                change = 2.0 * ((delta * g + delta**2) * weights).sum(axis=-1)
                flat = int(np.argmin(change))
                if change.flat[flat] < best_gain:
                    i, k = divmod(flat, partners.shape[1])
                    best_gain, best_pair = float(change.flat[flat]), (members_a[i], partners[i, k], a, b)
        # Stop when no swap helps by more than rounding noise of the cost.
        if best_pair is None or best_gain > -1e-12:
            return swaps
        i, j, a, b = best_pair
        assignment[i], assignment[j] = b, a
        moved = features[i] - features[j]
        current[a] -= moved
        current[b] += moved
    return MAX_SWAPS


def check_disjoint(splits: Mapping[str, pl.DataFrame]) -> None:
    """Raise DataError naming the first subject found in two splits."""
    seen: dict[str, str] = {}
    for name, frame in splits.items():
        for subject in frame["subject_id"].unique().sort().to_list():
            if subject in seen:
                raise DataError(f"subject {subject} appears in both {seen[subject]} and {name}")
            seen[subject] = name


# ---------------------------------------------------------------------------
# official protocols


def crossing_subjects(images: pl.DataFrame) -> list[str]:
    """Subjects that a protocol's label files list on both sides (train file and test file), sorted."""
    _check_protocol_column(images)
    sides = images.group_by("subject_id").agg(pl.col("protocol_split").n_unique().alias("sides"))
    return sorted(sides.filter(pl.col("sides") > 1)["subject_id"].to_list())


def _check_protocol_column(images: pl.DataFrame) -> None:
    if "protocol_split" not in images.columns:
        raise DataError("images table has no protocol_split column (which label file listed each image): re-run ingest")
    bad = images.filter(~pl.col("protocol_split").is_in(["train", "test"]) | pl.col("protocol_split").is_null())
    if bad.height:
        raise DataError(f"protocol_split must be 'train' or 'test'; {bad.height} images have {bad['protocol_split'][0]!r} (e.g. {bad['path'][0]})")


def split_official_protocol(
    images: pl.DataFrame,
    val_fraction: float,
    seed: int,
    n_images: int | None,
    unit: str,
    subset_seed: int,
) -> dict[str, pl.DataFrame]:
    """Train/val/test of an official protocol: test = the test file, whole; train/val = the train file by subject.

    Subjects listed in both files are dropped from the train side (see `crossing_subjects`); the
    remaining train-file images are optionally subset (`n_images`, `unit`, `subset_seed`; the test
    file is never subset) and split by subject into train and val with `val_fraction` of the images.
    """
    if not 0 < val_fraction < 1:
        raise ConfigError(f"split.val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    _check_protocol_column(images)
    test = images.filter(pl.col("protocol_split") == "test").sort("path", maintain_order=True)
    if test.height == 0:
        raise DataError("the protocol's test file lists no usable image")
    crossing = crossing_subjects(images)
    pool = images.filter((pl.col("protocol_split") == "train") & ~pl.col("subject_id").is_in(crossing))
    if pool.height == 0:
        raise DataError(f"the protocol's train file lists no usable image of a subject absent from the test file ({len(crossing)} subjects are on both sides)")
    try:
        pool = choose_subset(pool, n_images, subset_seed, unit)
    except DataError as exc:
        raise DataError(f"{exc} (under an official protocol the subset draws from the train file only)") from exc
    result = split_subjects(pool, {"train": 1.0 - val_fraction, "val": val_fraction}, seed)
    result["test"] = test
    check_disjoint(result)
    return result


# ---------------------------------------------------------------------------
# reports and the workflow step


def _size_distribution(frame: pl.DataFrame) -> dict:
    counts = frame.group_by("subject_id").len()["len"].to_numpy()
    if counts.size == 0:
        return {key: None for key in ("min", "q1", "median", "q3", "max", "mean")}
    q1, median, q3 = np.quantile(counts, [0.25, 0.5, 0.75])
    return {"min": int(counts.min()), "q1": float(q1), "median": float(median), "q3": float(q3), "max": int(counts.max()), "mean": float(counts.mean())}


def _single_class_subjects(frame: pl.DataFrame) -> dict[str, int]:
    per = frame.group_by("subject_id").agg((pl.col("label") == 0).all().alias("live_only"), (pl.col("label") == 1).all().alias("spoof_only"))
    return {"live_only": int(per["live_only"].sum()), "spoof_only": int(per["spoof_only"].sum())}


def split_report(splits: Mapping[str, pl.DataFrame], fractions: Mapping[str, float | None]) -> dict:
    """Counts per split: images, subjects, live, spoof, spoof types, images per subject, single-class subjects.

    `fraction` is a split's share of the images of the splits that have a target fraction (all of
    them under the paper protocol); a split whose target is None (an official test file) has none.
    """
    total = sum(f.height for f in splits.values())
    targeted = sum(f.height for name, f in splits.items() if fractions[name] is not None)
    report = {"total_images": total, "splits": {}}
    for name, frame in splits.items():
        live = int((frame["label"] == 0).sum())
        types = frame.group_by("spoof_type").len().sort("spoof_type")
        report["splits"][name] = {
            "images": frame.height,
            "subjects": frame["subject_id"].n_unique(),
            "live": live,
            "spoof": frame.height - live,
            "live_fraction": live / frame.height if frame.height else None,
            "target_fraction": fractions[name],
            "fraction": frame.height / targeted if fractions[name] is not None and targeted else None,
            "spoof_types": {str(t): int(n) for t, n in types.iter_rows()},
            "images_per_subject": _size_distribution(frame),
            "single_class_subjects": _single_class_subjects(frame),
        }
    report["subject_overlap"] = 0
    return report


def _subset_summary(available: pl.DataFrame, chosen: pl.DataFrame, subset: Mapping) -> dict:
    return {
        "unit": subset["unit"],
        "n_images": subset["n_images"],
        "seed": subset["seed"],
        "available_images": available.height,
        "available_subjects": available["subject_id"].n_unique(),
        "images": chosen.height,
        "subjects": chosen["subject_id"].n_unique(),
        "single_class_subjects_available": _single_class_subjects(available),
        "single_class_subjects": _single_class_subjects(chosen),
    }


def make_splits(images: pl.DataFrame, protocol: str, subset: Mapping, split: Mapping) -> tuple[dict[str, pl.DataFrame], dict]:
    """The study's train/val/test manifests and their report, from the table of usable images.

    `protocol` is `dataset.protocol`; `subset` and `split` are the config sections (`n_images`,
    `seed`, `unit`; `fractions`, `seed`, `val_fraction`). Under `paper` the subset of all usable
    images is split 3 ways by `split.fractions`; under an official protocol see
    `split_official_protocol`. Raises before anything could be written.
    """
    if protocol == PAPER_PROTOCOL:
        chosen = choose_subset(images, subset["n_images"], subset["seed"], subset["unit"])
        splits = split_subjects(chosen, split["fractions"], split["seed"])
        report = split_report(splits, split["fractions"])
        report["subset"] = _subset_summary(images, chosen, subset)
    else:
        splits = split_official_protocol(images, split["val_fraction"], split["seed"], subset["n_images"], subset["unit"], subset["seed"])
        report = split_report(splits, {"train": 1.0 - split["val_fraction"], "val": split["val_fraction"], "test": None})
        crossing = crossing_subjects(images)
        train_file = images.filter(pl.col("protocol_split") == "train")
        removed = train_file.filter(pl.col("subject_id").is_in(crossing))
        pool = train_file.filter(~pl.col("subject_id").is_in(crossing))
        report["subset"] = _subset_summary(pool, pl.concat([splits["train"], splits["val"]]), subset)
        report["protocol"] = {
            "train_file_images": train_file.height,
            "test_file_images": splits["test"].height,
            "crossing_subjects": len(crossing),
            "crossing_images_removed": removed.height,
            "crossing_subject_examples": crossing[:10],
        }
    report["protocol_name"] = protocol
    report["method"] = "subject-disjoint split, subjects in seeded random order"
    return splits, report


# ---------------------------------------------------------------------------
# the leakage ablation's control and its measure


def split_images(subset: pl.DataFrame, fractions: dict[str, float], seed: int) -> dict[str, pl.DataFrame]:
    """Image-level random split (identities shared across splits): the leakage ablation's control.

    Within each spoof type (live = type 0) the images are shuffled with `seed` and cut at the
    cumulative `fractions`, so class and attack-type shares match the subject split's targets;
    subjects are ignored on purpose.
    """
    subset = subset.sort("path")
    rng = np.random.default_rng(seed)
    types = subset["spoof_type"].to_numpy()
    cumulative = np.cumsum([fractions[s] for s in SPLITS])[:-1]
    assignment = np.empty(subset.height, dtype=object)
    for code in np.unique(types):
        idx = np.flatnonzero(types == code)
        idx = idx[rng.permutation(len(idx))]
        for name, part in zip(SPLITS, np.split(idx, np.round(cumulative * len(idx)).astype(int))):
            assignment[part] = name
    labelled = subset.with_columns(pl.Series("_split", assignment.astype(str)))
    result = {s: labelled.filter(pl.col("_split") == s).drop("_split") for s in SPLITS}
    for name, frame in result.items():
        if frame.height == 0:
            raise DataError(f"image-level split '{name}' got no image: too few images for split.fractions")
    return result


def identity_overlap(train: pl.DataFrame, test: pl.DataFrame) -> dict:
    """How many test identities (and their images) also appear in the training split."""
    seen = set(train["subject_id"].unique().to_list())
    test_subjects = test["subject_id"].unique().to_list()
    seen_subjects = [s for s in test_subjects if s in seen]
    seen_images = int(test["subject_id"].is_in(list(seen)).sum())
    return {
        "test_subjects": len(test_subjects),
        "test_subjects_seen_in_train": len(seen_subjects),
        "fraction_test_subjects_seen": len(seen_subjects) / len(test_subjects) if test_subjects else None,
        "test_images": test.height,
        "test_images_of_seen_subjects": seen_images,
        "fraction_test_images_seen": seen_images / test.height if test.height else None,
    }
