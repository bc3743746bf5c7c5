"""Rule ingest: thin wrapper around fasflow.pipeline.run_ingest."""

from fasflow.pipeline import run_ingest
from fasflow.runlog import run_step

sm = snakemake  # noqa: F821
run_step(
    lambda: run_ingest(
        sm.params.root,
        sm.params.label_files,
        sm.params.policies,
        sm.params.check_files,
        sm.threads,
        sm.output.images,
        sm.output.report,
    ),
    sm.log[0],
)
