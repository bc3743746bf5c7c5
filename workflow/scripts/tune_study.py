"""Rule tune_study: fasflow.steps.run_tune_study with the rule's named inputs, outputs and params."""

from fasflow.steps import run_tune_study, run_rule

run_rule(run_tune_study, snakemake)  # noqa: F821
