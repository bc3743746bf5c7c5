"""Rule synthesize_dataset: thin wrapper around fasflow.synth.generate."""

from fasflow.runlog import get_logger, run_step
from fasflow.synth import generate


def main():
    synthetic = snakemake.params.synthetic  # noqa: F821
    counts = generate(
        snakemake.params.root,  # noqa: F821
        n_subjects=synthetic["n_subjects"],
        images_per_subject=synthetic["images_per_subject"],
        seed=synthetic["seed"],
    )
    get_logger().info("synthetic dataset written: %s", counts)


run_step(main, snakemake.log[0])  # noqa: F821
