# Configuration checks, the output layout and the input functions of every rule file.
import os
import re
import sys

# This checkout's package drives the workflow: parse-time checks import it from src/, and
# configure_job_environment gives every job the same src/ (on the host and in the container).
sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from fasflow.config import (  # noqa: E402
    check_architectures,
    check_config,
    check_dataset_root,
    run_settings,
    scored_models,
    study_settings,
    validate_config,
    zoo_models,
    zoo_run_settings,
)
from fasflow.errors import ConfigError  # noqa: E402
from fasflow import MODEL_FILES  # noqa: E402
from fasflow.workflow_env import configure_job_environment  # noqa: E402

try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
    check_config(config)
    check_architectures(config)
    check_dataset_root(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

configure_job_environment(workflow.basedir)

SCENARIOS = list(config["scenarios"])
TUNED_SCENARIOS = [s for s in SCENARIOS if config["scenarios"][s]["tune"]]
# Every trained model gets predictions; tables list the scenarios, then the teacher as reference.
MODELS = ["teacher"] + SCENARIOS
EVAL = config["evaluate"]
TABLE_MODELS = sorted(SCENARIOS) + (["teacher"] if EVAL["include_teacher"] else [])
EXPORT = config["export"]
# Students first, then the teacher as a reference (export.include_teacher).
EXPORT_MODELS = SCENARIOS + (["teacher"] if EXPORT["include_teacher"] else [])
# Beyond the paper (workflow/rules/beyond.smk): the student zoo's models, trained next to the
# scenarios, and the external test sets every trained model is scored on.
ZOO = zoo_models(config)
ZOO_MODELS = list(ZOO)
EXTERNAL_TESTS = config["external_tests"]
# Roots of the external sets the workflow generates (external_tests.<name>.synthetic).
SYNTHETIC_EXTERNAL = {
    os.path.normpath(spec["root"]): name
    for name, spec in EXTERNAL_TESTS.items()
    if spec["synthetic"]["enabled"]
}
FIGURE_FORMATS = ("png", "pdf")
TABLE_FORMATS = ("csv", "md")


def one_of(names):
    """A wildcard pattern matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


# Every wildcard's values, in one place.
wildcard_constraints:
    split="train|val|test",
    scenario=one_of(SCENARIOS),
    name=one_of(MODELS + ZOO_MODELS),
    student=one_of(ZOO_MODELS),
    ext=one_of(EXTERNAL_TESTS),
    external_root=one_of(SYNTHETIC_EXTERNAL),
    worker=r"\d+",
    seed=r"\d+",
    spoof_type=r"[a-z0-9_]+",
    variant=r"replicates/seed\d+|leakage(?:/seed\d+)?|cross_attack/without_[a-z0-9_]+",
    curve="roc|det",


# --- the output layout: every path a rule writes starts with one of these folders. A run of an
# official protocol writes under results/<protocol>/ and logs/<protocol>/, so protocols never
# overwrite each other or the paper's study (results/).
PROTOCOL = config["dataset"]["protocol"]
RUN_FOLDER = "" if PROTOCOL == "paper" else f"{PROTOCOL}/"


def results(path):
    """A file of this run under results/."""
    return f"results/{RUN_FOLDER}{path}"


def logs(path):
    """A rule's log file under logs/."""
    return f"logs/{RUN_FOLDER}{path}"


def benchmarks(path):
    """A rule's Snakemake benchmark record (wall time, memory) under results/benchmarks/."""
    return results(f"benchmarks/{path}")


def model_files(folder):
    """The files of one trained model (fasflow.models.MODEL_FILES) in `folder` under results/."""
    return {role: results(f"{folder}/{name}") for role, name in MODEL_FILES.items()}


def report_file(path, caption, category, **labels):
    """`path` as an entry of the HTML report (snakemake --report), with its caption file."""
    return report(
        path, caption=f"../report/{caption}", category=category, labels=labels
    )


def report_files(stem, formats, caption, category, **labels):
    """`stem`.<format> for each format, each in the report (labelled with its format)."""
    return {
        fmt: report_file(
            f"{stem}.{fmt}", caption, category, **labels, format=fmt.upper()
        )
        for fmt in formats
    }


def table_outputs(stem, caption, label, category="Tables"):
    """CSV and Markdown of one table, both in the report."""
    return report_files(
        results(f"tables/{stem}"), TABLE_FORMATS, caption, category, table=label
    )


def figure_outputs(stem, caption, label, category="Figures"):
    """PNG and PDF of one figure, both in the report."""
    return report_files(
        results(f"figures/{stem}"), FIGURE_FORMATS, caption, category, figure=label
    )


def table_targets(*stems):
    return [results(f"tables/{stem}.{fmt}") for stem in stems for fmt in TABLE_FORMATS]


def figure_paths(stem):
    return [results(f"figures/{stem}.{fmt}") for fmt in FIGURE_FORMATS]


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
    "comparisons",
    "protocol",
)


# --- data


def label_files(wildcards=None):
    """The protocol's train and test label files (the paper's study reads intra_test's)."""
    folder = "intra_test" if PROTOCOL == "paper" else PROTOCOL
    return [
        os.path.join(config["dataset"]["root"], "metas", folder, f"{part}_label.json")
        for part in ("train", "test")
    ]


def split_files(*splits, folder=""):
    """Face caches of `splits` and the manifests of the rows they hold (training never asks for test)."""
    return {
        f"{split}_{kind}": results(f"{folder}faces/{split}.{ext}")
        for split in splits
        for kind, ext in (("faces", "npy"), ("manifest", "parquet"))
    }


# --- training


def pretrained_inputs(arch):
    """The local ImageNet weights of `arch` when models.pretrained is on (fetch_pretrained)."""
    if not config["models"]["pretrained"]:
        return {}
    return {
        "pretrained": os.path.join(
            config["models"]["pretrained_dir"], f"{arch}.safetensors"
        )
    }


def teacher_files(folder="models/teacher"):
    """The frozen teacher a distilled student learns from."""
    files = model_files(folder)
    return {"teacher_weights": files["weights"], "teacher_summary": files["summary"]}


def teacher_inputs(wildcards=None):
    """Train/val faces and, if configured, the teacher's ImageNet weights."""
    return {
        **split_files("train", "val"),
        **pretrained_inputs(config["models"]["teacher"]),
    }


def student_inputs(wildcards, folder="", teacher="models/teacher"):
    """Train/val faces, the frozen teacher for distilled scenarios, tuned parameters for tuned ones."""
    scenario = config["scenarios"][wildcards.scenario]
    inputs = {
        **split_files("train", "val", folder=folder),
        **pretrained_inputs(config["models"]["student"]),
    }
    if scenario["distill"]:
        inputs.update(teacher_files(teacher))
    if scenario["tune"]:
        inputs["best_params"] = results(f"optuna/{wildcards.scenario}/best_params.json")
    return inputs


def training_settings(wildcards):
    """What one run depends on (fasflow.config.run_settings): editing other sections retrains nothing."""
    return run_settings(config, wildcards.get("scenario", "teacher"))


# --- tuning


def tune_inputs(wildcards):
    """Train/val faces, ImageNet weights if used, the frozen teacher if distilling."""
    inputs = {
        **split_files("train", "val"),
        **pretrained_inputs(config["models"]["student"]),
    }
    if config["scenarios"][wildcards.scenario]["distill"]:
        inputs.update(teacher_files())
    return inputs


def tuning_settings(wildcards):
    """What one study depends on (fasflow.config.study_settings)."""
    return study_settings(config, wildcards.scenario)


def tune_worker_outputs(wildcards):
    """Marker files of the tune.workers workers of one study."""
    return [
        results(f"optuna/{wildcards.scenario}/workers/{worker}.json")
        for worker in range(config["tune"]["workers"])
    ]


def tune_targets(wildcards=None):
    """Best parameters and figures of every tuned scenario."""
    return [
        results(f"optuna/{name}/{f}")
        for name in TUNED_SCENARIOS
        for f in ("best_params.json", "trials.parquet", "history.png", "importance.png")
    ]


# --- evaluation


def predict_inputs(wildcards, folder=""):
    """A trained model (under results/`folder`models/) and the val/test faces it is scored on."""
    files = model_files(f"{folder}models/{wildcards.name}")
    return {
        "weights": files["weights"],
        "summary": files["summary"],
        **split_files("val", "test", folder=folder),
    }


def eval_files(kind):
    """Metrics JSON ('metrics') or test predictions ('predictions') of every model in the tables."""
    suffix = "json" if kind == "metrics" else "parquet"
    return [results(f"{kind}/{name}.{suffix}") for name in TABLE_MODELS]


def tuned_best_params(wildcards=None):
    """Optuna results of the tuned scenarios (read by Table 1)."""
    return [results(f"optuna/{name}/best_params.json") for name in TUNED_SCENARIOS]


# --- export


def every_core(wildcards):
    """All cores given with --cores, so nothing runs beside the job (1 when none are, e.g. --report)."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def int8_enabled():
    return EXPORT["int8"]["enabled"]


def latency_engines():
    """The engines timed by the latency rule (OpenVINO reads the same ONNX files, export.openvino)."""
    return ["torch", "onnxruntime"] + (["openvino"] if EXPORT["openvino"] else [])


def latency_inputs(wildcards):
    """The fp32 model, the INT8 model when enabled, and the weights for the PyTorch eager run."""
    files = model_files(f"models/{wildcards.name}")
    inputs = {
        "onnx": results(f"onnx/{wildcards.name}.onnx"),
        "weights": files["weights"],
        "summary": files["summary"],
    }
    if int8_enabled():
        inputs["int8"] = results(f"onnx/{wildcards.name}.int8.onnx")
    return inputs


def table4_inputs(wildcards=None):
    """Export reports, latency reports and (when enabled) INT8 reports of every exported model."""
    inputs = {
        "exports": [results(f"onnx/{name}.json") for name in EXPORT_MODELS],
        "latencies": [results(f"latency/{name}.json") for name in EXPORT_MODELS],
    }
    if int8_enabled():
        inputs["int8"] = [results(f"onnx/{name}.int8.json") for name in EXPORT_MODELS]
    return inputs


def onnx_targets(wildcards=None):
    """Every ONNX file and its report (the `onnx` target)."""
    suffixes = [".onnx", ".json"]
    if int8_enabled():
        suffixes += [".int8.onnx", ".int8.json"]
    return [results(f"onnx/{name}{s}") for name in EXPORT_MODELS for s in suffixes]


# --- beyond the paper (workflow/rules/extended.smk)
REPLICATES = config["replicates"]
LEAKAGE = config["leakage"]
CROSS_ATTACK = config["cross_attack"]


def replicate_seed(wildcards):
    return int(wildcards.seed)


def replicate_student_inputs(wildcards):
    """A replicate's inputs: the main study's tuned parameters, or its seed's own study (replicates.retune)."""
    inputs = student_inputs(wildcards)
    if REPLICATES["retune"] and "best_params" in inputs:
        inputs["best_params"] = results(
            f"replicates/seed{wildcards.seed}/optuna/{wildcards.scenario}/best_params.json"
        )
    return inputs


def replicate_tuning_settings(wildcards):
    """The scenario's study with the replicate's seed for training and sampling (replicates.retune)."""
    settings = study_settings(config, wildcards.scenario)
    seed = replicate_seed(wildcards)
    return {
        **settings,
        "train": {**settings["train"], "seed": seed},
        "tune": {**settings["tune"], "seed": seed},
    }


def replicate_tune_worker_outputs(wildcards):
    """Marker files of the workers of one replicate's study."""
    return [
        results(
            f"replicates/seed{wildcards.seed}/optuna/{wildcards.scenario}/workers/{w}.json"
        )
        for w in range(config["tune"]["workers"])
    ]


def leakage_student_inputs(wildcards):
    """The random split's faces; a distilled scenario learns from the random split's own teacher."""
    return student_inputs(
        wildcards, folder="leakage/", teacher="leakage/models/teacher"
    )


def leakage_seeds():
    """Training seeds of the leakage comparison (leakage.seeds; none given: the main train.seed)."""
    return LEAKAGE["seeds"] or [config["train"]["seed"]]


def leakage_predictions(side):
    """Test predictions of each leakage scenario and seed on one split, scenario by scenario.

    The subject-disjoint side is the main study at the main seed and the seed replicates at
    the others; the random side is results/leakage/ and results/leakage/seed<N>/.
    """
    main_seed = config["train"]["seed"]
    if side == "disjoint":
        folders = {seed: f"replicates/seed{seed}/" for seed in leakage_seeds()}
        folders[main_seed] = ""
    else:
        folders = {seed: f"leakage/seed{seed}/" for seed in leakage_seeds()}
        folders[main_seed] = "leakage/"
    return [
        results(f"{folders[seed]}predictions/{scenario}.parquet")
        for scenario in LEAKAGE["scenarios"]
        for seed in leakage_seeds()
    ]


def variant_predict_inputs(wildcards):
    """The variant's model and the val/test faces of its split (the random split for leakage)."""
    folder = "leakage/" if wildcards.variant.startswith("leakage") else ""
    files = model_files(f"{wildcards.variant}/models/{wildcards.name}")
    return {
        "weights": files["weights"],
        "summary": files["summary"],
        **split_files("val", "test", folder=folder),
    }


def replicate_metric_files(wildcards=None):
    """Metrics of each replicated scenario per seed; the main seed reuses the main models."""
    return [
        (
            results(f"metrics/{name}.json")
            if seed == config["train"]["seed"]
            else results(f"replicates/seed{seed}/metrics/{name}.json")
        )
        for name in REPLICATES["scenarios"]
        for seed in REPLICATES["seeds"]
    ]


def leakage_split_inputs(wildcards):
    """The paper study's split manifests, whose union the leakage control re-splits at random."""
    if PROTOCOL != "paper":
        raise WorkflowError(
            f"leakage: the identity-leakage ablation re-splits the study's subset at random, which would "
            f"take apart the official test file of dataset.protocol {PROTOCOL!r}; run it with the paper protocol"
        )
    return {
        f"{split}_manifest": results(f"splits/{split}.parquet")
        for split in ("train", "val", "test")
    }


def cross_attack_predictions(wildcards=None):
    """Test predictions of S0 trained without each configured spoof type."""
    if not CROSS_ATTACK["enabled"]:
        raise WorkflowError(
            "cross_attack.enabled is false: set it to true (e.g. --config cross_attack='{enabled: true}') "
            "to train the leave-one-attack-type-out models"
        )
    return [
        results(f"cross_attack/without_{spoof_type}/predictions/S0.parquet")
        for spoof_type in CROSS_ATTACK["spoof_types"]
    ]


# --- beyond the paper, continued: external test sets and the student zoo (workflow/rules/beyond.smk)
ZOO_SECTION = config["zoo"]
# The study's own MobileNetV2 models of the zoo's recipes: the zoo table's reference rows.
ZOO_REFERENCES = [ZOO_SECTION["recipe"]] + (
    [ZOO_SECTION["distilled_recipe"]] if ZOO_SECTION["distilled_recipe"] else []
)
ZOO_TABLE_MODELS = ZOO_REFERENCES + ZOO_MODELS
# Every trained model (the study's, then the zoo's) scores every external set, unless
# cross_dataset.models names some.
try:
    SCORED_MODELS = scored_models(config, MODELS + ZOO_MODELS)
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None


def synthetic_external_settings(wildcards):
    """external_tests.<name>.synthetic of the set generated at this root."""
    return EXTERNAL_TESTS[SYNTHETIC_EXTERNAL[wildcards.external_root]]["synthetic"]


def external_source(wildcards):
    """What an external set's ingest depends on: the generated set's marker, the table, or the set's folder."""
    spec = EXTERNAL_TESTS[wildcards.ext]
    if spec["synthetic"]["enabled"]:
        return {"source": os.path.join(os.path.normpath(spec["root"]), "EXTERNAL.json")}
    return {"source": spec["table"] if spec["format"] == "table" else spec["root"]}


def external_spec(wildcards):
    return EXTERNAL_TESTS[wildcards.ext]


def external_root(wildcards):
    return EXTERNAL_TESTS[wildcards.ext]["root"]


def cross_dataset_inputs(wildcards=None):
    """Every model's predictions on every external set (set by set), its CelebA-Spoof val and test predictions, the ingest reports."""
    if not EXTERNAL_TESTS:
        raise WorkflowError(
            "external_tests is empty: name at least one external test set (see config/README.md, Cross-dataset tests)"
        )
    return {
        "external": [
            results(f"external/{ext}/predictions/{name}.parquet")
            for ext in EXTERNAL_TESTS
            for name in SCORED_MODELS
        ],
        "val": [results(f"predictions/val/{name}.parquet") for name in SCORED_MODELS],
        "test": [results(f"predictions/{name}.parquet") for name in SCORED_MODELS],
        "reports": [
            results(f"external/{ext}/ingest_report.json") for ext in EXTERNAL_TESTS
        ],
    }


def zoo_student_inputs(wildcards):
    """Train/val faces, the architecture's ImageNet weights if used, the frozen teacher for a distilled recipe."""
    model = ZOO[wildcards.student]
    inputs = {**split_files("train", "val"), **pretrained_inputs(model["arch"])}
    if config["scenarios"][model["recipe"]]["distill"]:
        inputs.update(teacher_files())
    return inputs


def zoo_training_settings(wildcards):
    """What one zoo model's training depends on (fasflow.zoo.zoo_run_settings)."""
    return zoo_run_settings(config, wildcards.student)


def zoo_table_inputs(wildcards=None):
    """Metrics, export, INT8 and latency reports of the reference models and every zoo model."""
    if not ZOO_MODELS:
        raise WorkflowError(
            "students is empty: name at least one timm architecture (see config/README.md, Student zoo)"
        )
    inputs = {
        "metrics": [results(f"metrics/{name}.json") for name in ZOO_TABLE_MODELS],
        "exports": [results(f"onnx/{name}.json") for name in ZOO_TABLE_MODELS],
        "latencies": [results(f"latency/{name}.json") for name in ZOO_TABLE_MODELS],
    }
    if int8_enabled():
        inputs["int8"] = [
            results(f"onnx/{name}.int8.json") for name in ZOO_TABLE_MODELS
        ]
    return inputs


def zoo_architectures(wildcards=None):
    """The timm architecture of every row of the zoo table."""
    return [
        ZOO[name]["arch"] if name in ZOO else config["models"]["student"]
        for name in ZOO_TABLE_MODELS
    ]


def zoo_recipes(wildcards=None):
    """The scenario whose hyperparameters every row of the zoo table was trained with."""
    return [ZOO[name]["recipe"] if name in ZOO else name for name in ZOO_TABLE_MODELS]
