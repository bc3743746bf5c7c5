"""Rule quantize_onnx: thin wrapper around fasflow.quantize.quantize_trained."""

from fasflow.quantize import quantize_trained
from fasflow.runlog import run_step
from fasflow.seeding import set_threads

sm = snakemake  # noqa: F821
set_threads(sm.threads)
run_step(
    lambda: quantize_trained(
        sm.wildcards.name,
        sm.input.onnx,
        sm.output.onnx,
        sm.output.report,
        sm.input.val_faces,
        sm.input.test_faces,
        sm.input.test_manifest,
        calibration_size=sm.params.calibration_size,
        per_channel=sm.params.per_channel,
    ),
    sm.log[0],
)
