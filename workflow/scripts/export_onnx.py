"""Rule export_onnx: fasflow.steps.run_export_onnx with the rule's named inputs, outputs and params."""

from fasflow.steps import run_export_onnx, run_rule

run_rule(run_export_onnx, snakemake)  # noqa: F821
