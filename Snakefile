# fasflow: identity-aware face anti-spoofing on CelebA-Spoof.
# `snakemake --cores 8 --use-apptainer` runs the paper's study (config/config.yaml);
# `make demo` runs it on synthetic data. Target rules only: the stages live in workflow/rules/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# Every rule runs in this image with --use-apptainer / --sdm apptainer (config key container.image).
container: config["container"]["image"]


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/extended.smk"
include: "workflow/rules/beyond.smk"


rule all:
    """The paper's study: splits, four students and the teacher, Tables 1-4, figures, ONNX files."""
    default_target: True
    input:
        results("splits/split_report.json"),
        table_targets(*ALL_TABLES, "table4_onnx"),
        figure_targets(),
        onnx_targets(),


rule splits:
    """Subject-disjoint split manifests and their report."""
    input:
        results("splits/split_report.json"),


rule tables:
    """All evaluation tables (CSV and Markdown): Tables 1-3 and APCER per spoof type."""
    input:
        table_targets(*ALL_TABLES),


rule table1:
    """Table 1: training configuration of each scenario."""
    input:
        table_targets("table1_configuration"),


rule table2:
    """Table 2: classification metrics with bootstrap CIs and comparisons with the reference."""
    input:
        table_targets("table2_classification"),


rule table3:
    """Table 3: ISO/IEC 30107-3 anti-spoofing metrics with bootstrap CIs."""
    input:
        table_targets("table3_antispoofing"),


rule figures:
    """All evaluation figures (PNG and PDF)."""
    input:
        figure_targets(),


rule tune:
    """Optuna studies of the tuned scenarios (S1, S3): best parameters, trials and figures."""
    input:
        tune_targets(),


rule onnx:
    """Every model in ONNX (fp32 and INT8) with its parity and quantization reports."""
    input:
        onnx_targets(),


rule table4:
    """Table 4: ONNX size, CPU latency (fp32, INT8, PyTorch eager) and parity."""
    input:
        table_targets("table4_onnx"),


rule replicates:
    """Seed replicates: every replicated scenario per seed, the replicates table and spread figure."""
    input:
        table_targets("replicates"),
        figure_paths("replicates"),


rule leakage:
    """Identity-leakage ablation: S0 (and leakage.scenarios) on a random vs the subject-disjoint split."""
    input:
        table_targets("leakage"),


rule cross_attack:
    """Leave-one-attack-type-out: S0 without each cross_attack.spoof_types type (needs cross_attack.enabled)."""
    input:
        table_targets("cross_attack"),


rule cross_dataset:
    """External test sets (external_tests): every model at the CelebA-Spoof validation threshold, table and ROC figure."""
    input:
        table_targets("cross_dataset"),
        figure_paths("cross_dataset_roc"),


rule zoo:
    """Student zoo (students): other timm architectures with S0's recipe next to MobileNetV2, table and figure."""
    input:
        table_targets("zoo"),
        figure_paths("zoo_pareto"),
