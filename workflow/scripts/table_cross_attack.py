"""Rule table_cross_attack: fasflow.steps.run_table_cross_attack with the rule's named inputs, outputs and params."""

from fasflow.steps import run_table_cross_attack, run_rule

run_rule(run_table_cross_attack, snakemake)  # noqa: F821
