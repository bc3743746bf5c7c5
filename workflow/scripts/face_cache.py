"""Rule face_cache: thin wrapper around fasflow.pipeline.run_face_cache."""

from fasflow.pipeline import run_face_cache
from fasflow.runlog import run_step
from fasflow.seeding import set_threads

sm = snakemake  # noqa: F821
set_threads(sm.threads)
run_step(
    lambda: run_face_cache(
        sm.input.manifest,
        sm.params.root,
        sm.params.faces["margin"],
        sm.params.faces["size"],
        sm.threads,
        sm.output.faces,
    ),
    sm.log[0],
)
