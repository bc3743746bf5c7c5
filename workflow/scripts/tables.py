"""Rules table_*: thin wrapper around fasflow.tables (params.table picks the table)."""

from fasflow import tables
from fasflow.runlog import run_step
from fasflow.seeding import set_threads

sm = snakemake  # noqa: F821
set_threads(sm.threads)
models = list(sm.params.models)
out = (sm.output.csv, sm.output.md)


def main():
    kind = sm.params.table
    if kind == "table1":
        tuned = [m for m in models if sm.params.scenarios[m]["tune"]]
        tables.write_table1(
            dict(zip(models, sm.input.summaries)),
            sm.params.scenarios,
            dict(zip(tuned, sm.input.best_params)),
            sm.params.tune,
            *out,
        )
    elif kind == "table2":
        tables.write_table2(
            dict(zip(models, sm.input.metrics)),
            dict(zip(models, sm.input.predictions)),
            sm.params.reference,
            *out,
        )
    elif kind == "table3":
        tables.write_table3(dict(zip(models, sm.input.metrics)), sm.params.bpcer_at_apcer, *out)
    elif kind == "apcer_per_type":
        tables.write_apcer_per_type(dict(zip(models, sm.input.metrics)), *out)
    else:
        raise ValueError(f"unknown table {kind!r}")


run_step(main, sm.log[0])
