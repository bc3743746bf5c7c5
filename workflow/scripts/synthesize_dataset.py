"""Rule synthesize_dataset: fasflow.steps.run_synthesize_dataset with the rule's named inputs, outputs and params."""

from fasflow.steps import run_synthesize_dataset, run_rule

run_rule(run_synthesize_dataset, snakemake)  # noqa: F821
