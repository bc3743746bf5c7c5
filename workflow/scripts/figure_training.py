"""Rule figure_training: fasflow.steps.run_figure_training with the rule's named inputs, outputs and params."""

from fasflow.steps import run_figure_training, run_rule

run_rule(run_figure_training, snakemake)  # noqa: F821
