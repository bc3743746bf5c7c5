"""Rule table_configuration: fasflow.steps.run_table1_configuration with the rule's named inputs, outputs and params."""

from fasflow.steps import run_table1_configuration, run_rule

run_rule(run_table1_configuration, snakemake)  # noqa: F821
