"""Rule split: thin wrapper around fasflow.pipeline.run_subset_and_split."""

from fasflow.pipeline import run_subset_and_split
from fasflow.runlog import run_step

sm = snakemake  # noqa: F821
run_step(
    lambda: run_subset_and_split(
        sm.input.images,
        sm.params.subset["n_images"],
        sm.params.subset["seed"],
        sm.params.split["fractions"],
        sm.params.split["seed"],
        {"train": sm.output.train, "val": sm.output.val, "test": sm.output.test},
        sm.output.report,
    ),
    sm.log[0],
)
