"""Rule tune_worker: one worker of a scenario's Optuna study (thin wrapper around fasflow.tune)."""

from fasflow.io import write_json
from fasflow.recipes import load_frozen_teacher, load_split
from fasflow.runlog import run_step
from fasflow.seeding import set_threads
from fasflow.tune import run_worker

sm = snakemake  # noqa: F821


def main():
    set_threads(sm.threads)
    config, scenario = sm.params.config, sm.wildcards.scenario
    train = load_split(sm.input.train_faces, sm.input.train_manifest)
    val = load_split(sm.input.val_faces, sm.input.val_manifest)
    distill = config["scenarios"][scenario]["distill"]
    teacher = load_frozen_teacher(config, sm.input.teacher) if distill else None
    # Face caches are large: the manifests they mirror row by row stand in for them.
    fingerprinted = {k: v for k, v in sm.input.items() if k.endswith("_manifest") or k == "teacher"}
    result = run_worker(
        config, scenario, int(sm.wildcards.worker), sm.params.journal, train, val, teacher, input_files=fingerprinted
    )
    write_json(sm.output.done, result)


run_step(main, sm.log[0])
