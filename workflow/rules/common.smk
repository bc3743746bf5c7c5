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


def split_inputs(splits=("train", "val")):
    """Face caches and manifests of the given splits (training never asks for test)."""
    inputs = {}
    for split in splits:
        inputs[f"{split}_faces"] = f"results/faces/{split}.npy"
        inputs[f"{split}_manifest"] = f"results/splits/{split}.parquet"
    return inputs


def student_inputs(wildcards):
    """Train/val faces, the frozen teacher for distilled scenarios, tuned parameters for tuned ones."""
    scenario = config["scenarios"][wildcards.scenario]
    inputs = split_inputs()
    if scenario["distill"]:
        inputs["teacher"] = "results/models/teacher/weights.safetensors"
    if scenario["tune"]:
        inputs["best_params"] = f"results/optuna/{wildcards.scenario}/best_params.json"
    return inputs


def model_outputs(name):
    return {
        "weights": f"results/models/{name}/weights.safetensors",
        "history": f"results/models/{name}/history.csv",
        "summary": f"results/models/{name}/summary.json",
    }
