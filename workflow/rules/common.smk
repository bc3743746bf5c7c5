# Config validation, shared settings and input functions.
import os
import re
import sys

from snakemake.utils import min_version, validate

sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from fasflow.config import check_config, check_dataset_root  # noqa: E402
from fasflow.errors import ConfigError  # noqa: E402
from fasflow.workflow_env import configure_job_environment  # noqa: E402

validate(config, workflow.source_path("../schemas/config.schema.yaml"))
try:
    check_config(config)
    check_dataset_root(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

configure_job_environment(workflow.basedir)

DATASET_ROOT = config["dataset"]["root"]
SPLITS = ["train", "val", "test"]
SCENARIOS = list(config["scenarios"])


def label_files(wildcards=None):
    """The label JSON files ingest reads (produced by synthesize_dataset for the demo)."""
    return [os.path.join(DATASET_ROOT, f) for f in config["dataset"]["label_files"]]


def dataset_root(wildcards, input, output):
    """dataset.root, recovered from the label files among the rule's inputs or outputs."""
    files = getattr(input, "labels", None) or output.labels
    relative = config["dataset"]["label_files"][0]
    return os.path.normpath(files[0][: -len(relative)] or os.curdir)


def every_core(wildcards):
    """All cores given with --cores, so nothing runs beside the job (1 when none are, e.g. --report)."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def model_dir(wildcards, input, output):
    """results/models/<name>/ of the rule's weights: the ones it writes, else the ones it reads."""
    return os.path.dirname(getattr(output, "weights", None) or input.weights)


def split_inputs(splits=("train", "val")):
    """Face caches and manifests of the given splits (training never asks for test)."""
    inputs = {}
    for split in splits:
        inputs[f"{split}_faces"] = f"results/faces/{split}.npy"
        inputs[f"{split}_manifest"] = f"results/splits/{split}.parquet"
    return inputs


def pretrained_inputs(arch):
    """The local ImageNet weights of `arch` when models.pretrained is on (fetch_pretrained)."""
    if not config["models"]["pretrained"]:
        return {}
    return {
        "pretrained": os.path.join(
            config["models"]["pretrained_dir"], f"{arch}.safetensors"
        )
    }


def teacher_inputs(wildcards=None):
    """Train/val faces and, if configured, the teacher's ImageNet weights."""
    return {**split_inputs(), **pretrained_inputs(config["models"]["teacher"])}


def student_inputs(wildcards):
    """Train/val faces, the frozen teacher for distilled scenarios, tuned parameters for tuned ones."""
    scenario = config["scenarios"][wildcards.scenario]
    inputs = {**split_inputs(), **pretrained_inputs(config["models"]["student"])}
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


# --- evaluation (workflow/rules/evaluate.smk): models, tables, figures and report entries.
EVAL = config["evaluate"]
# Every trained model gets predictions; tables list the scenarios, then the teacher as reference.
MODELS = ["teacher"] + SCENARIOS
TABLE_MODELS = sorted(SCENARIOS) + (["teacher"] if EVAL["include_teacher"] else [])
MODEL_PATTERN = "|".join(re.escape(m) for m in MODELS)
FIGURE_FORMATS = ["png", "pdf"]
# Only these settings change a metrics file (the others only change tables).
METRIC_SETTINGS = ("threshold", "bootstrap_n", "seed", "ci_level", "bpcer_at_apcer")

if EVAL["reference"] not in SCENARIOS:
    raise WorkflowError(
        f"evaluate.reference: {EVAL['reference']!r} is not a scenario (have {SCENARIOS})"
    )


def eval_metric_files(wildcards=None):
    """Metrics JSON of every model in the tables, in table order."""
    return [f"results/metrics/{name}.json" for name in TABLE_MODELS]


def eval_prediction_files(wildcards=None):
    """Test predictions of every model in the tables, in table order."""
    return [f"results/predictions/{name}.parquet" for name in TABLE_MODELS]


def tuned_best_params(wildcards=None):
    """Optuna results of the tuned scenarios (read by Table 1)."""
    return [
        f"results/optuna/{name}/best_params.json"
        for name in SCENARIOS
        if config["scenarios"][name]["tune"]
    ]


def figure_paths(stem):
    return [f"results/figures/{stem}.{ext}" for ext in FIGURE_FORMATS]


def table_paths(stem, caption, label):
    """CSV and Markdown of one table, both in the report."""
    return {
        ext: report(
            f"results/tables/{stem}.{ext}",
            caption=f"../report/{caption}",
            category="Tables",
            labels={"table": label, "format": ext.upper()},
        )
        for ext in ("csv", "md")
    }


def figure_outputs(stem, caption, label, category="Figures"):
    """PNG and PDF of one figure, both in the report."""
    return {
        ext: report(
            f"results/figures/{stem}.{ext}",
            caption=f"../report/{caption}",
            category=category,
            labels={"figure": label, "format": ext.upper()},
        )
        for ext in FIGURE_FORMATS
    }


def table_targets(*stems):
    return [f"results/tables/{stem}.{ext}" for stem in stems for ext in ("csv", "md")]


def figure_targets():
    stems = [
        "figure1_confusion_matrices",
        "figure2_comparison",
        "apcer_per_type_heatmap",
        "roc_curves",
        "det_curves",
    ] + [f"training/{name}" for name in MODELS]
    return [path for stem in stems for path in figure_paths(stem)]


ALL_TABLES = (
    "table1_configuration",
    "table2_classification",
    "table3_antispoofing",
    "apcer_per_type",
)


# --- tuning (workflow/rules/tune.smk): Optuna studies of the scenarios with `tune: true`.
TUNED_SCENARIOS = [name for name in SCENARIOS if config["scenarios"][name]["tune"]]
# A pattern that matches nothing when no scenario is tuned.
TUNED_PATTERN = "|".join(re.escape(s) for s in TUNED_SCENARIOS) or "(?!)"


def tune_inputs(wildcards):
    """Train/val faces and manifests, ImageNet weights if used, the frozen teacher if distilling."""
    inputs = {**split_inputs(), **pretrained_inputs(config["models"]["student"])}
    if config["scenarios"][wildcards.scenario]["distill"]:
        inputs["teacher"] = "results/models/teacher/weights.safetensors"
    return inputs


def training_settings(wildcards):
    """The config sections one training run depends on (other sections do not trigger reruns).

    The teacher section stays in for students: distillation rebuilds the teacher from it.
    """
    settings = {k: config[k] for k in ("models", "train", "teacher")}
    name = wildcards.get("scenario", wildcards.get("name", "teacher"))
    scenarios = config["scenarios"]
    settings["scenarios"] = {name: scenarios[name]} if name in scenarios else {}
    return settings


def tune_settings(wildcards):
    """The config sections a study depends on: its training run's plus `tune`."""
    return {**training_settings(wildcards), "tune": config["tune"]}


def tune_worker_outputs(wildcards):
    """Marker files of the tune.workers workers of one study."""
    return [
        f"results/optuna/{wildcards.scenario}/workers/{worker}.json"
        for worker in range(config["tune"]["workers"])
    ]


def tune_targets(wildcards=None):
    """Best parameters and figures of every tuned scenario."""
    return [
        f"results/optuna/{name}/{f}"
        for name in TUNED_SCENARIOS
        for f in ("best_params.json", "trials.parquet", "history.png", "importance.png")
    ]


# --- export (workflow/rules/export.smk): ONNX, INT8, latency and Table 4.
EXPORT = config["export"]
# Students first, then the teacher as a reference (export.include_teacher).
EXPORT_MODELS = SCENARIOS + (["teacher"] if EXPORT["include_teacher"] else [])
EXPORT_PATTERN = "|".join(re.escape(m) for m in EXPORT_MODELS)


def int8_enabled():
    return EXPORT["int8"]["enabled"]


def latency_inputs(wildcards):
    """The fp32 model, the INT8 model when enabled, and the weights for the PyTorch eager run."""
    inputs = {
        "onnx": f"results/onnx/{wildcards.name}.onnx",
        "weights": f"results/models/{wildcards.name}/weights.safetensors",
        "summary": f"results/models/{wildcards.name}/summary.json",
    }
    if int8_enabled():
        inputs["int8"] = f"results/onnx/{wildcards.name}.int8.onnx"
    return inputs


def table4_inputs(wildcards=None):
    """Export reports, latency reports and (when enabled) INT8 reports of every exported model."""
    inputs = {
        "exports": [f"results/onnx/{name}.json" for name in EXPORT_MODELS],
        "latencies": [f"results/latency/{name}.json" for name in EXPORT_MODELS],
    }
    if int8_enabled():
        inputs["int8"] = [f"results/onnx/{name}.int8.json" for name in EXPORT_MODELS]
    return inputs


def onnx_targets(wildcards=None):
    """Every ONNX file and its report (the `onnx` target)."""
    suffixes = [".onnx", ".json"]
    if int8_enabled():
        suffixes += [".int8.onnx", ".int8.json"]
    return [f"results/onnx/{name}{s}" for name in EXPORT_MODELS for s in suffixes]
