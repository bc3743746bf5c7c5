"""Rule table_zoo: fasflow.steps.run_table_zoo with the rule's named inputs, outputs and params."""

from fasflow.steps import run_table_zoo, run_rule

run_rule(run_table_zoo, snakemake)  # noqa: F821
