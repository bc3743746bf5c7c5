"""Rule table_replicates: fasflow.steps.run_table_replicates with the rule's named inputs, outputs and params."""

from fasflow.steps import run_table_replicates, run_rule

run_rule(run_table_replicates, snakemake)  # noqa: F821
