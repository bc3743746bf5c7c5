"""Rules table_replicates, table_leakage, table_cross_attack: thin wrappers around fasflow.extended."""

from fasflow import extended
from fasflow.runlog import run_step

sm = snakemake  # noqa: F821
p = sm.params


def main():
    if p.table == "replicates":
        # Inputs are listed scenario by scenario, seed by seed (see replicate_metric_files).
        files = iter(sm.input.metrics)
        paths = {s: {seed: next(files) for seed in p.seeds} for s in p.scenarios}
        extended.write_replicates(paths, p.reference, p.level, sm.output.csv, sm.output.md, [sm.output.png, sm.output.pdf])
    elif p.table == "leakage":
        paths = {s: {"disjoint": sm.input.disjoint[i], "random": sm.input.random[i]} for i, s in enumerate(p.scenarios)}
        manifests = {
            "disjoint": (sm.input.disjoint_train, sm.input.disjoint_test),
            "random": (sm.input.random_train, sm.input.random_test),
        }
        extended.write_leakage(paths, manifests, p.bootstrap_n, p.seed, p.level, sm.output.csv, sm.output.md)
    elif p.table == "cross_attack":
        extended.write_cross_attack(
            dict(zip(p.spoof_types, sm.input.unseen)), sm.input.seen, p.bootstrap_n, p.seed, p.level, sm.output.csv, sm.output.md
        )
    else:
        raise ValueError(f"unknown table {p.table!r}")


run_step(main, sm.log[0])
