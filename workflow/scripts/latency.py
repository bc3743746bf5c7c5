"""Rule latency: fasflow.steps.run_latency with the rule's named inputs, outputs and params."""

from fasflow.steps import run_latency, run_rule

run_rule(run_latency, snakemake)  # noqa: F821
