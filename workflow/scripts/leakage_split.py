"""Rule leakage_split: fasflow.steps.run_leakage_split with the rule's named inputs, outputs and params."""

from fasflow.steps import run_leakage_split, run_rule

run_rule(run_leakage_split, snakemake)  # noqa: F821
