"""Rule table_leakage: fasflow.steps.run_table_leakage with the rule's named inputs, outputs and params."""

from fasflow.steps import run_table_leakage, run_rule

run_rule(run_table_leakage, snakemake)  # noqa: F821
