"""Rule fetch_pretrained: fasflow.steps.run_fetch_pretrained with the rule's named inputs, outputs and params."""

from fasflow.steps import run_fetch_pretrained, run_rule

run_rule(run_fetch_pretrained, snakemake)  # noqa: F821
