"""Rule table_onnx: fasflow.steps.run_table4_onnx with the rule's named inputs, outputs and params."""

from fasflow.steps import run_table4_onnx, run_rule

run_rule(run_table4_onnx, snakemake)  # noqa: F821
