"""Rule table_cross_dataset: fasflow.steps.run_table_cross_dataset with the rule's named inputs, outputs and params."""

from fasflow.steps import run_table_cross_dataset, run_rule

run_rule(run_table_cross_dataset, snakemake)  # noqa: F821
