"""Rule ingest_external: fasflow.steps.run_ingest_external with the rule's named inputs, outputs and params."""

from fasflow.steps import run_ingest_external, run_rule

run_rule(run_ingest_external, snakemake)  # noqa: F821
