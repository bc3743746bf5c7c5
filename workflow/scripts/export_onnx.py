"""Rule export_onnx: thin wrapper around fasflow.export.export_trained."""

from fasflow.export import export_trained
from fasflow.runlog import run_step
from fasflow.seeding import set_threads

sm = snakemake  # noqa: F821
set_threads(sm.threads)
run_step(
    lambda: export_trained(
        sm.wildcards.name,
        sm.params.model_dir,
        sm.output.onnx,
        sm.output.report,
        sm.input.test_faces,
        face_margin=sm.params.face_margin,
        face_size=sm.params.face_size,
        opset=sm.params.opset,
        fold_constants=sm.params.fold_constants,
        atol=sm.params.atol,
        rtol=sm.params.rtol,
    ),
    sm.log[0],
)
