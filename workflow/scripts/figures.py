"""Rules figure_*: thin wrapper around fasflow.figures (params.kind picks the figure)."""

from fasflow import figures
from fasflow.runlog import run_step
from fasflow.seeding import set_threads

sm = snakemake  # noqa: F821
set_threads(sm.threads)
paths = [sm.output[ext] for ext in ("png", "pdf")]


def main():
    if sm.params.kind == "training":
        figures.write_training_curves(sm.input.history, sm.input.summary, sm.wildcards.name, paths)
    else:
        inputs = sm.input.metrics if "metrics" in sm.input.keys() else sm.input.predictions
        figures.write_figure(sm.params.kind, dict(zip(sm.params.models, inputs)), paths)


run_step(main, sm.log[0])
