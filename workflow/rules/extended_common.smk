# Settings, checks and input functions of workflow/rules/extended.smk (beyond the paper).
# Extra models live under results/{variant}/ (variant = replicates/seed<N>, leakage,
# cross_attack/without_<type>) in the main study's layout; the main predict/metrics scripts are reused.
REPLICATES = config["replicates"]
LEAKAGE = config["leakage"]
CROSS_ATTACK = config["cross_attack"]
MAIN_SEED = config["train"]["seed"]
VARIANT_PATTERN = r"replicates/seed\d+|leakage|cross_attack/without_[a-z0-9_]+"

for _key, _names in (
    ("replicates.scenarios", REPLICATES["scenarios"]),
    ("leakage.scenarios", LEAKAGE["scenarios"]),
):
    for _name in _names:
        if _name not in SCENARIOS:
            raise WorkflowError(
                f"{_key}: {_name!r} is not a scenario (have {SCENARIOS})"
            )
if REPLICATES["reference"] not in REPLICATES["scenarios"]:
    raise WorkflowError(
        f"replicates.reference: {REPLICATES['reference']!r} is not in replicates.scenarios"
    )
if REPLICATES["resplit"]:
    raise WorkflowError(
        "replicates.resplit: true is not implemented (distilled scenarios would need a teacher per split); "
        "set it to false"
    )


def variant_split_inputs(variant, splits=("train", "val")):
    """Faces and manifests of a variant's splits: the random split for leakage, else the main split."""
    prefix = "results/leakage/" if variant == "leakage" else "results/"
    return {
        f"{split}_{kind}": f"{prefix}{folder}/{split}.{ext}"
        for split in splits
        for kind, folder, ext in (
            ("faces", "faces", "npy"),
            ("manifest", "splits", "parquet"),
        )
    }


def variant_train_inputs(wildcards):
    """Faces of the variant's split, the teacher (the leakage split's own), tuned parameters."""
    inputs = variant_split_inputs(wildcards.variant)
    if wildcards.name == "teacher":
        return {**inputs, **pretrained_inputs(config["models"]["teacher"])}
    inputs.update(pretrained_inputs(config["models"]["student"]))
    scenario = config["scenarios"][wildcards.name]
    if scenario["distill"]:
        # Replicates and cross-attack runs share the main teacher; the leakage split trains its own.
        teacher_dir = "leakage/models" if wildcards.variant == "leakage" else "models"
        inputs["teacher"] = f"results/{teacher_dir}/teacher/weights.safetensors"
    if scenario["tune"]:
        inputs["best_params"] = f"results/optuna/{wildcards.name}/best_params.json"
    return inputs


def variant_predict_inputs(wildcards):
    """The variant's model and the val/test faces of its split."""
    model = f"results/{wildcards.variant}/models/{wildcards.name}"
    return {
        "weights": f"{model}/weights.safetensors",
        "summary": f"{model}/summary.json",
        **variant_split_inputs(wildcards.variant, ("val", "test")),
    }


def replicate_metric_files(wildcards=None):
    """Metrics of each replicated scenario per seed; the main seed reuses the main models."""
    return [
        (
            f"results/metrics/{name}.json"
            if seed == MAIN_SEED
            else f"results/replicates/seed{seed}/metrics/{name}.json"
        )
        for name in REPLICATES["scenarios"]
        for seed in REPLICATES["seeds"]
    ]


def cross_attack_predictions(wildcards=None):
    """Test predictions of S0 trained without each configured spoof type."""
    if not CROSS_ATTACK["enabled"]:
        raise WorkflowError(
            "cross_attack.enabled is false: set it to true (e.g. --config cross_attack='{enabled: true}') "
            "to train the leave-one-attack-type-out models"
        )
    return [
        f"results/cross_attack/without_{name}/predictions/S0.parquet"
        for name in CROSS_ATTACK["spoof_types"]
    ]


def extended_table_outputs(stem, caption, label, figure=False):
    """CSV and Markdown (and for figures PNG/PDF) in the report under 'Beyond the paper'."""
    outputs = {
        ext: report(
            f"results/tables/{stem}.{ext}",
            caption=f"../report/{caption}",
            category="Beyond the paper",
            labels={"table": label, "format": ext.upper()},
        )
        for ext in ("csv", "md")
    }
    if figure:
        outputs.update(
            {
                ext: report(
                    f"results/figures/{stem}.{ext}",
                    caption=f"../report/{caption}",
                    category="Beyond the paper",
                    labels={"figure": label, "format": ext.upper()},
                )
                for ext in FIGURE_FORMATS
            }
        )
    return outputs
