"""Rule figure_comparison: fasflow.steps.run_figure_comparison with the rule's named inputs, outputs and params."""

from fasflow.steps import run_figure_comparison, run_rule

run_rule(run_figure_comparison, snakemake)  # noqa: F821
