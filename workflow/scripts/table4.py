"""Rule table_onnx: thin wrapper around fasflow.latency (Table 4)."""

from fasflow.latency import table4_rows, write_table4
from fasflow.runlog import run_step

sm = snakemake  # noqa: F821
models = list(sm.params.models)


def main():
    int8 = dict(zip(models, sm.input.int8)) if "int8" in sm.input.keys() else None
    rows = table4_rows(models, dict(zip(models, sm.input.exports)), dict(zip(models, sm.input.latencies)), int8)
    write_table4(rows, sm.output.csv, sm.output.md)


run_step(main, sm.log[0])
