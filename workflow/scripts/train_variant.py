"""Rule train_variant: thin wrapper around fasflow.extended.run_variant_training."""

from fasflow.extended import run_variant_training
from fasflow.io import read_json
from fasflow.runlog import run_step
from fasflow.seeding import set_threads

sm = snakemake  # noqa: F821


def main():
    set_threads(sm.threads)
    inputs = dict(sm.input.items())
    tuned = read_json(inputs["best_params"])["params"] if "best_params" in inputs else None
    run_variant_training(sm.params.config, sm.wildcards.name, sm.wildcards.variant, inputs, sm.params.out_dir, overrides=tuned)


run_step(main, sm.log[0])
