"""Rule leakage_split: thin wrapper around fasflow.extended.run_random_split."""

from fasflow.extended import run_random_split
from fasflow.runlog import run_step

sm = snakemake  # noqa: F821
run_step(
    lambda: run_random_split(
        {"train": sm.input.train, "val": sm.input.val, "test": sm.input.test},
        sm.params.fractions,
        sm.params.seed,
        {"train": sm.output.train, "val": sm.output.val, "test": sm.output.test},
        sm.output.report,
    ),
    sm.log[0],
)
