"""Rule predict_external: fasflow.steps.run_predict_external with the rule's named inputs, outputs and params."""

from fasflow.steps import run_predict_external, run_rule

run_rule(run_predict_external, snakemake)  # noqa: F821
