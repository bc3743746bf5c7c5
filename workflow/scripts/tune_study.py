"""Rule tune_study: best parameters, trials table and figures of a finished Optuna study."""

from fasflow.runlog import run_step
from fasflow.seeding import set_threads
from fasflow.tune import summarize

sm = snakemake  # noqa: F821


def main():
    set_threads(sm.threads)
    summarize(sm.params.config, sm.wildcards.scenario, sm.params.journal, dict(sm.output.items()))


run_step(main, sm.log[0])
