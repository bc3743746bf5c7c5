"""The study's subset and its subject-disjoint train/val/test split.

Both work on whole subjects so that no identity appears in two splits. The split is a
seeded greedy assignment: subjects, largest first (random order among equals), go to the
split whose image, live and per-spoof-type counts fall furthest short of their targets.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .errors import DataError

SPLITS = ("train", "val", "test")
N_SPOOF_TYPES = 11


def choose_subset(images: pl.DataFrame, n_images: int, seed: int) -> pl.DataFrame:
    """`n_images` images taken subject by subject in seeded order, keeping the live:spoof ratio.

    Subjects are taken whole while they fit each class's quota; the last subject of a class
    may be cut (a seeded sample of its images) so the counts are exact.
    """
    if n_images > images.height:
        raise DataError(f"subset.n_images = {n_images} but only {images.height} usable images were ingested")
    images = images.sort("path")
    n_live_all = int((images["label"] == 0).sum())
    quotas = {0: round(n_images * n_live_all / images.height)}
    quotas[1] = n_images - quotas[0]
    rng = np.random.default_rng(seed)
    subjects = np.array(sorted(images["subject_id"].unique().to_list()), dtype=object)
    order = {s: i for i, s in enumerate(subjects[rng.permutation(len(subjects))])}
    ranked = images.with_columns(
        pl.col("subject_id").replace_strict(order, return_dtype=pl.Int64).alias("_rank"),
        pl.Series("_tiebreak", rng.permutation(images.height)),
    ).sort("_rank", "_tiebreak")
    chosen = []
    for label, quota in quotas.items():
        cls = ranked.filter(pl.col("label") == label)
        chosen.append(cls.head(quota))
    subset = pl.concat(chosen).drop("_rank", "_tiebreak").sort("path")
    return subset


def split_subjects(subset: pl.DataFrame, fractions: dict[str, float], seed: int) -> dict[str, pl.DataFrame]:
    """Assign whole subjects to splits so images, live:spoof and spoof types match `fractions`."""
    per_subject = (
        subset.group_by("subject_id")
        .agg(
            pl.len().alias("n"),
            (pl.col("label") == 0).sum().alias("live"),
            *[(pl.col("spoof_type") == k).sum().alias(f"t{k}") for k in range(1, N_SPOOF_TYPES)],
        )
        .sort("subject_id")
    )
    if per_subject.height < len(SPLITS):
        raise DataError(f"need at least {len(SPLITS)} subjects to split, found {per_subject.height}")
    rng = np.random.default_rng(seed)
    per_subject = per_subject.with_columns(pl.Series("_shuffle", rng.permutation(per_subject.height)))
    per_subject = per_subject.sort(["n", "_shuffle"], descending=[True, False])

    # One count vector per subject: images, live, then spoof types 1..10.
    features = per_subject.select("n", "live", *[f"t{k}" for k in range(1, N_SPOOF_TYPES)]).to_numpy().astype(float)
    total = features.sum(axis=0)
    share = np.array([fractions[s] for s in SPLITS])
    targets = share[:, None] * total[None, :]
    # Images matter most; class and type balance next. Scale by totals so dimensions are comparable.
    weights = np.concatenate([[4.0, 2.0], np.ones(N_SPOOF_TYPES - 1)]) / np.maximum(total, 1.0) ** 2
    current = np.zeros_like(targets)
    assignment = np.empty(per_subject.height, dtype=np.int64)
    for i, row in enumerate(features):
        # Relative shortfall decides: a split that is already full is penalised quadratically.
        after = current[None, :, :] + np.eye(len(SPLITS))[:, :, None] * row[None, None, :]
        cost = (((after - targets[None]) ** 2) * weights).sum(axis=(1, 2))
        choice = int(np.argmin(cost))
        assignment[i] = choice
        current[choice] += row
    # Every split needs at least one subject.
    for s in range(len(SPLITS)):
        if not (assignment == s).any():
            raise DataError(f"split '{SPLITS[s]}' got no subject: too few subjects for split.fractions")
    mapping = dict(zip(per_subject["subject_id"].to_list(), [SPLITS[a] for a in assignment]))
    labelled = subset.with_columns(pl.col("subject_id").replace_strict(mapping).alias("_split"))
    result = {s: labelled.filter(pl.col("_split") == s).drop("_split").sort("path") for s in SPLITS}
    check_disjoint(result)
    return result


def check_disjoint(splits: dict[str, pl.DataFrame]) -> None:
    seen: dict[str, str] = {}
    for name, frame in splits.items():
        for subject in frame["subject_id"].unique().to_list():
            if subject in seen:
                raise DataError(f"subject {subject} appears in both {seen[subject]} and {name}")
            seen[subject] = name


def split_report(splits: dict[str, pl.DataFrame], fractions: dict[str, float]) -> dict:
    total = sum(f.height for f in splits.values())
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
            "fraction": frame.height / total if total else None,
            "spoof_types": {str(t): int(n) for t, n in types.iter_rows()},
        }
    report["subject_overlap"] = 0
    return report


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
