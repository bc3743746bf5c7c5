"""Rule table_protocol: fasflow.steps.run_table_protocol with the rule's named inputs, outputs and params."""

from fasflow.steps import run_table_protocol, run_rule

run_rule(run_table_protocol, snakemake)  # noqa: F821
