"""Rule fetch_pretrained: thin wrapper around fasflow.models.fetch_pretrained."""

from fasflow.models import fetch_pretrained
from fasflow.runlog import get_logger, run_step

sm = snakemake  # noqa: F821


def main():
    get_logger().info("fetching ImageNet weights of %s with timm", sm.wildcards.arch)
    fetch_pretrained(sm.wildcards.arch, sm.output.weights)


run_step(main, sm.log[0])
