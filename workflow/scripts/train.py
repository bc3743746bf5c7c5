"""Rules train_teacher and train_student: thin wrapper around fasflow.recipes.run_training."""

from fasflow.io import read_json
from fasflow.recipes import run_training, train_config
from fasflow.runlog import run_step
from fasflow.seeding import set_threads

sm = snakemake  # noqa: F821


def main():
    set_threads(sm.threads)
    name = sm.wildcards.get("scenario", "teacher")
    inputs = dict(sm.input.items())
    tuned = read_json(inputs["best_params"])["params"] if "best_params" in inputs else None
    cfg = train_config(sm.params.config, name, overrides=tuned)
    run_training(cfg, sm.params.config, inputs, sm.params.out_dir)


run_step(main, sm.log[0])
