# fasflow: identity-aware face anti-spoofing on CelebA-Spoof.
# `snakemake --cores 8 --use-apptainer` runs the paper's study (config/config.yaml);
# `make demo` runs it on synthetic data. Target rules only: the stages live in workflow/rules/.


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"


rule all:
    input:
        "results/splits/split_report.json",
        expand("results/faces/{split}.npy", split=SPLITS),


rule splits:
    """Subject-disjoint split manifests and their report."""
    input:
        "results/splits/split_report.json",
