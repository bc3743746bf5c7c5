"""Rule metrics (and metrics_variant): fasflow.steps.run_metrics with the rule's named inputs, outputs and params."""

from fasflow.steps import run_metrics, run_rule

run_rule(run_metrics, snakemake)  # noqa: F821
