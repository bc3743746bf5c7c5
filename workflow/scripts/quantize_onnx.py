"""Rule quantize_onnx: fasflow.steps.run_quantize_onnx with the rule's named inputs, outputs and params."""

from fasflow.steps import run_quantize_onnx, run_rule

run_rule(run_quantize_onnx, snakemake)  # noqa: F821
