# Config validation, shared settings and input functions.
import os
import sys

from snakemake.utils import min_version, validate

sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from fasflow.config import check_config, check_dataset_root  # noqa: E402
from fasflow.errors import ConfigError  # noqa: E402


validate(config, workflow.source_path("../schemas/config.schema.yaml"))
try:
    check_config(config)
    check_dataset_root(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

# Rules run `fasflow` code from this checkout, in the container or not.
_SRC = os.path.join(workflow.basedir, "src")
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_SRC, os.environ.get("PYTHONPATH", "")) if p
)
os.environ["APPTAINERENV_PYTHONPATH"] = _SRC

DATASET_ROOT = config["dataset"]["root"]
SPLITS = ["train", "val", "test"]
SCENARIOS = list(config["scenarios"])


def label_files(wildcards=None):
    """The label JSON files ingest reads (produced by synthesize_dataset for the demo)."""
    return [os.path.join(DATASET_ROOT, f) for f in config["dataset"]["label_files"]]
