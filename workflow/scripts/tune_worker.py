"""Rule tune_worker: fasflow.steps.run_tune_worker with the rule's named inputs, outputs and params."""

from fasflow.steps import run_tune_worker, run_rule

run_rule(run_tune_worker, snakemake)  # noqa: F821
