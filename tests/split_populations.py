"""Seeded synthetic image tables shaped like CelebA-Spoof's metadata, for split and subset simulations.

Only the columns the subset and split read (path, subject_id, label, spoof_type), plus
`protocol_split` when asked. Built with numpy and polars so 625k rows take about a second.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def lognormal_population(
    n_subjects: int = 10_177,
    median_images: float = 4.5,
    sigma: float = 0.8,
    live_share: float = 1 / 3,
    live_only_subjects: int = 0,
    seed: int = 0,
) -> pl.DataFrame:
    """Subjects with lognormal image counts (at least 2), each holding both classes.

    Every subject has at least one live and one spoof image (as CelebA-Spoof's identities do),
    except the first `live_only_subjects` subjects, which hold live images only: so a live-only
    subject in a subset is either one of those or an artefact of the subset. A subject's live
    share varies around `live_share` (Beta, mean `live_share`), spoof types 1-10 uniformly.
    """
    rng = np.random.default_rng(seed)
    counts = np.maximum(2, np.rint(rng.lognormal(np.log(median_images), sigma, n_subjects))).astype(np.int64)
    shares = rng.beta(4 * live_share, 4 * (1 - live_share), n_subjects)
    live = np.clip(rng.binomial(counts, shares), 1, counts - 1)
    live[:live_only_subjects] = counts[:live_only_subjects]
    subject = np.repeat(np.arange(n_subjects), counts)
    # Within a subject the first `live` images are live, the rest spoof.
    position = np.arange(subject.size) - np.repeat(np.cumsum(counts) - counts, counts)
    label = (position >= np.repeat(live, counts)).astype(np.int64)
    spoof_type = np.where(label == 1, rng.integers(1, 11, subject.size), 0)
    frame = pl.DataFrame({"_subject": subject, "_index": np.arange(subject.size), "label": label, "spoof_type": spoof_type})
    return frame.select(
        pl.format(
            "Data/train/{}/{}/{}.jpg",
            pl.col("_subject"),
            pl.when(pl.col("label") == 1).then(pl.lit("spoof")).otherwise(pl.lit("live")),
            pl.col("_index").cast(pl.String).str.zfill(7),
        ).alias("path"),
        pl.col("_subject").cast(pl.String).alias("subject_id"),
        "label",
        "spoof_type",
    )


def with_protocol_files(images: pl.DataFrame, test_subject_share: float, crossing_subjects: int, seed: int) -> pl.DataFrame:
    """Add `protocol_split`: a seeded share of subjects listed in the test file, the rest in the train file.

    `crossing_subjects` further subjects of the train side have about half of their images
    listed in the test file as well, so they appear on both sides as a crossing identity would.
    """
    rng = np.random.default_rng(seed)
    subjects = np.array(sorted(images["subject_id"].unique().to_list()), dtype=object)
    shuffled = subjects[rng.permutation(len(subjects))]
    n_test = round(test_subject_share * len(subjects))
    test_subjects = set(shuffled[:n_test].tolist())
    crossing = set(shuffled[n_test : n_test + crossing_subjects].tolist())
    coin = rng.random(images.height) < 0.5
    in_test = images["subject_id"].is_in(list(test_subjects)) | (images["subject_id"].is_in(list(crossing)) & pl.Series(coin))
    return images.with_columns(pl.when(in_test).then(pl.lit("test")).otherwise(pl.lit("train")).alias("protocol_split"))
