"""Rule synthesize_external: fasflow.steps.run_synthesize_external with the rule's named inputs, outputs and params."""

from fasflow.steps import run_synthesize_external, run_rule

run_rule(run_synthesize_external, snakemake)  # noqa: F821
