"""Rule figure_confusion_matrices: fasflow.steps.run_figure_confusion_matrices with the rule's named inputs, outputs and params."""

from fasflow.steps import run_figure_confusion_matrices, run_rule

run_rule(run_figure_confusion_matrices, snakemake)  # noqa: F821
