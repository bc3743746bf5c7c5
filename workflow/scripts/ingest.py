"""Rule ingest: fasflow.steps.run_ingest with the rule's named inputs, outputs and params."""

from fasflow.steps import run_ingest, run_rule

run_rule(run_ingest, snakemake)  # noqa: F821
