"""Rule table_comparisons: fasflow.steps.run_table_comparisons with the rule's named inputs, outputs and params."""

from fasflow.steps import run_table_comparisons, run_rule

run_rule(run_table_comparisons, snakemake)  # noqa: F821
