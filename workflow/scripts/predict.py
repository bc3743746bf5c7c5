"""Rule predict (and predict_variant): fasflow.steps.run_predict with the rule's named inputs, outputs and params."""

from fasflow.steps import run_predict, run_rule

run_rule(run_predict, snakemake)  # noqa: F821
