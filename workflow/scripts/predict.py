"""Rule predict: thin wrapper around fasflow.predict.run_predict."""

from fasflow.predict import run_predict
from fasflow.runlog import run_step
from fasflow.seeding import set_threads

sm = snakemake  # noqa: F821
set_threads(sm.threads)
run_step(
    lambda: run_predict(
        sm.params.model_dir,
        {
            "val": (sm.input.val_faces, sm.input.val_manifest, sm.output.val),
            "test": (sm.input.test_faces, sm.input.test_manifest, sm.output.test),
        },
        batch_size=sm.params.batch_size,
        device=sm.params.device,
        threshold=sm.params.threshold,
    ),
    sm.log[0],
)
