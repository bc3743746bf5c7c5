"""Rule table_antispoofing: fasflow.steps.run_table3_antispoofing with the rule's named inputs, outputs and params."""

from fasflow.steps import run_table3_antispoofing, run_rule

run_rule(run_table3_antispoofing, snakemake)  # noqa: F821
