"""Rule split: fasflow.steps.run_split with the rule's named inputs, outputs and params."""

from fasflow.steps import run_split, run_rule

run_rule(run_split, snakemake)  # noqa: F821
