"""Rule metrics: thin wrapper around fasflow.metrics.run_metrics."""

from fasflow.metrics import run_metrics
from fasflow.runlog import run_step
from fasflow.seeding import set_threads

sm = snakemake  # noqa: F821
set_threads(sm.threads)
run_step(lambda: run_metrics(sm.input.test, sm.input.val, sm.output.metrics, sm.params.settings), sm.log[0])
