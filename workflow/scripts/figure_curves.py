"""Rule figure_curves: fasflow.steps.run_figure_curves with the rule's named inputs, outputs and params."""

from fasflow.steps import run_figure_curves, run_rule

run_rule(run_figure_curves, snakemake)  # noqa: F821
