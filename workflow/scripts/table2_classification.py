"""Rule table_classification: fasflow.steps.run_table2_classification with the rule's named inputs, outputs and params."""

from fasflow.steps import run_table2_classification, run_rule

run_rule(run_table2_classification, snakemake)  # noqa: F821
