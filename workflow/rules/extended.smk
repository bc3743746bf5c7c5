# Beyond the paper: seed replicates, the identity-leakage ablation, leave-one-attack-type-out.
# Extra models live under results/{variant}/ (variant = replicates/seed<N>, leakage,
# cross_attack/without_<type>) in the main study's layout; the main predict/metrics scripts are reused.


include: "extended_common.smk"


rule leakage_split:
    """The main study's subset re-split at image level at random (identities shared): the leakage control."""
    input:
        train="results/splits/train.parquet",
        val="results/splits/val.parquet",
        test="results/splits/test.parquet",
    output:
        train="results/leakage/splits/train.parquet",
        val="results/leakage/splits/val.parquet",
        test="results/leakage/splits/test.parquet",
        report="results/leakage/splits/split_report.json",
    log:
        "logs/leakage/split.log",
    params:
        fractions=config["split"]["fractions"],
        seed=LEAKAGE["seed"],
    script:
        "../scripts/random_split.py"


rule leakage_face_cache:
    """Face cache of one split of the random image-level split."""
    input:
        manifest="results/leakage/splits/{split}.parquet",
    output:
        faces="results/leakage/faces/{split}.npy",
    log:
        "logs/leakage/face_cache/{split}.log",
    benchmark:
        "benchmarks/leakage/face_cache/{split}.tsv"
    wildcard_constraints:
        split="train|val|test",
    threads: 4
    params:
        root=DATASET_ROOT,
        faces=config["faces"],
    script:
        "../scripts/face_cache.py"


rule train_variant:
    """Train one model of a variant: another seed, the random split, or S0 without one spoof type."""
    input:
        unpack(variant_train_inputs),
    output:
        weights="results/{variant}/models/{name}/weights.safetensors",
        history="results/{variant}/models/{name}/history.csv",
        summary="results/{variant}/models/{name}/summary.json",
    log:
        "logs/{variant}/train/{name}.log",
    benchmark:
        "benchmarks/{variant}/train/{name}.tsv"
    wildcard_constraints:
        variant=VARIANT_PATTERN,
        name=MODEL_PATTERN,
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=8,
        mem_mb=16000,
        runtime=240,
    params:
        config=training_settings,
        out_dir=model_dir,
    script:
        "../scripts/train_variant.py"


rule predict_variant:
    """Test and validation scores of one variant model on its own split."""
    input:
        unpack(variant_predict_inputs),
    output:
        test="results/{variant}/predictions/{name}.parquet",
        val="results/{variant}/predictions/val/{name}.parquet",
    log:
        "logs/{variant}/predict/{name}.log",
    benchmark:
        "benchmarks/{variant}/predict/{name}.tsv"
    wildcard_constraints:
        variant=VARIANT_PATTERN,
        name=MODEL_PATTERN,
    threads: 2
    params:
        model_dir=model_dir,
        batch_size=config["train"]["batch_size"],
        device=config["train"]["device"],
        threshold=EVAL["threshold"],
    script:
        "../scripts/predict.py"


rule metrics_variant:
    """Every metric of one variant model on its test split (same settings as the main metrics)."""
    input:
        test="results/{variant}/predictions/{name}.parquet",
        val="results/{variant}/predictions/val/{name}.parquet",
    output:
        metrics="results/{variant}/metrics/{name}.json",
    log:
        "logs/{variant}/metrics/{name}.log",
    wildcard_constraints:
        variant=VARIANT_PATTERN,
        name=MODEL_PATTERN,
    threads: 1
    params:
        settings={k: EVAL[k] for k in METRIC_SETTINGS},
    script:
        "../scripts/metrics.py"


rule table_replicates:
    """Mean, SD and t-interval of each metric across seeds, paired t-tests, and the spread figure."""
    input:
        metrics=replicate_metric_files,
    output:
        **extended_table_outputs(
            "replicates", "replicates.rst", "seed replicates", figure=True
        ),
    log:
        "logs/tables/replicates.log",
    params:
        table="replicates",
        scenarios=REPLICATES["scenarios"],
        seeds=REPLICATES["seeds"],
        reference=REPLICATES["reference"],
        level=EVAL["ci_level"],
    script:
        "../scripts/extended_tables.py"


rule table_leakage:
    """ACER, APCER, BPCER, F1 on the subject-disjoint vs the random split, with bootstrap intervals."""
    input:
        disjoint=expand("results/predictions/{name}.parquet", name=LEAKAGE["scenarios"]),
        random=expand(
            "results/leakage/predictions/{name}.parquet", name=LEAKAGE["scenarios"]
        ),
        disjoint_train="results/splits/train.parquet",
        disjoint_test="results/splits/test.parquet",
        random_train="results/leakage/splits/train.parquet",
        random_test="results/leakage/splits/test.parquet",
    output:
        **extended_table_outputs("leakage", "leakage.rst", "identity leakage"),
    log:
        "logs/tables/leakage.log",
    params:
        table="leakage",
        scenarios=LEAKAGE["scenarios"],
        bootstrap_n=EVAL["bootstrap_n"],
        seed=EVAL["seed"],
        level=EVAL["ci_level"],
    script:
        "../scripts/extended_tables.py"


rule table_cross_attack:
    """APCER on each left-out spoof type next to the main S0's APCER on that type."""
    input:
        unseen=cross_attack_predictions,
        seen="results/predictions/S0.parquet",
    output:
        **extended_table_outputs("cross_attack", "cross_attack.rst", "cross attack"),
    log:
        "logs/tables/cross_attack.log",
    params:
        table="cross_attack",
        spoof_types=CROSS_ATTACK["spoof_types"],
        bootstrap_n=EVAL["bootstrap_n"],
        seed=EVAL["seed"],
        level=EVAL["ci_level"],
    script:
        "../scripts/extended_tables.py"
