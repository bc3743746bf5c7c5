"""Rule table_apcer_per_type: fasflow.steps.run_apcer_per_type with the rule's named inputs, outputs and params."""

from fasflow.steps import run_apcer_per_type, run_rule

run_rule(run_apcer_per_type, snakemake)  # noqa: F821
