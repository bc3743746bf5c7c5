"""Rule latency: thin wrapper around fasflow.latency.measure (1 thread and all cores of the job)."""

from fasflow.latency import run_latency
from fasflow.runlog import run_step
from fasflow.seeding import set_threads

sm = snakemake  # noqa: F821
set_threads(sm.threads)
run_step(
    lambda: run_latency(
        sm.params.model_dir,
        sm.input.onnx,
        sm.output.latency,
        threads=sm.threads,
        warmup=sm.params.warmup,
        runs=sm.params.runs,
        int8_path=sm.input.get("int8"),
    ),
    sm.log[0],
)
