# Evaluation: test/val predictions -> metrics with subject-bootstrap CIs -> tables and figures.
# The only rules that read the test split; validation scores only fix thresholds.


rule predict:
    """Scores of one trained model on the test split and on the validation split (for thresholds)."""
    input:
        weights="results/models/{name}/weights.safetensors",
        summary="results/models/{name}/summary.json",
        val_faces="results/faces/val.npy",
        val_manifest="results/splits/val.parquet",
        test_faces="results/faces/test.npy",
        test_manifest="results/splits/test.parquet",
    output:
        test="results/predictions/{name}.parquet",
        val="results/predictions/val/{name}.parquet",
    log:
        "logs/predict/{name}.log",
    benchmark:
        "benchmarks/predict/{name}.tsv"
    wildcard_constraints:
        name=MODEL_PATTERN,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        model_dir=model_dir,
        batch_size=config["train"]["batch_size"],
        device=config["train"]["device"],
        threshold=EVAL["threshold"],
    script:
        "../scripts/predict.py"


rule metrics:
    """Every metric of one model on test (threshold 0.5 and validation-fixed thresholds) with CIs."""
    input:
        test="results/predictions/{name}.parquet",
        val="results/predictions/val/{name}.parquet",
    output:
        metrics="results/metrics/{name}.json",
    log:
        "logs/metrics/{name}.log",
    benchmark:
        "benchmarks/metrics/{name}.tsv"
    wildcard_constraints:
        name=MODEL_PATTERN,
    threads: 1
    params:
        settings={k: EVAL[k] for k in METRIC_SETTINGS},
    script:
        "../scripts/metrics.py"


rule table_configuration:
    """Table 1: the hyperparameters each scenario was trained with (tuned values included)."""
    input:
        summaries=expand("results/models/{name}/summary.json", name=SCENARIOS),
        best_params=tuned_best_params,
    output:
        **table_paths("table1_configuration", "table1.rst", "1 configuration"),
    log:
        "logs/tables/table1_configuration.log",
    params:
        table="table1",
        models=SCENARIOS,
        scenarios=config["scenarios"],
        tune=config.get("tune", {}),
    script:
        "../scripts/tables.py"


rule table_classification:
    """Table 2: accuracy, precision, recall, F1, ROC-AUC with CIs, McNemar against the reference."""
    input:
        metrics=eval_metric_files,
        predictions=eval_prediction_files,
    output:
        **table_paths("table2_classification", "table2.rst", "2 classification"),
    log:
        "logs/tables/table2_classification.log",
    params:
        table="table2",
        models=TABLE_MODELS,
        reference=EVAL["reference"],
    script:
        "../scripts/tables.py"


rule table_antispoofing:
    """Table 3: APCER, BPCER, ACER with CIs, APCER_PAIS, ACER_ISO, EER, HTER, BPCER at fixed APCER."""
    input:
        metrics=eval_metric_files,
    output:
        **table_paths("table3_antispoofing", "table3.rst", "3 anti-spoofing"),
    log:
        "logs/tables/table3_antispoofing.log",
    params:
        table="table3",
        models=TABLE_MODELS,
        bpcer_at_apcer=EVAL["bpcer_at_apcer"],
    script:
        "../scripts/tables.py"


rule table_apcer_per_type:
    """APCER of each spoof type (PAI species) per model."""
    input:
        metrics=eval_metric_files,
    output:
        **table_paths("apcer_per_type", "apcer_per_type.rst", "APCER per spoof type"),
    log:
        "logs/tables/apcer_per_type.log",
    params:
        table="apcer_per_type",
        models=TABLE_MODELS,
    script:
        "../scripts/tables.py"


rule figure_confusion_matrices:
    """Figure 1: confusion matrices of all models on the test split."""
    input:
        metrics=eval_metric_files,
    output:
        **figure_outputs(
            "figure1_confusion_matrices", "figure1.rst", "1 confusion matrices"
        ),
    log:
        "logs/figures/figure1_confusion_matrices.log",
    params:
        kind="confusion_matrices",
        models=TABLE_MODELS,
    script:
        "../scripts/figures.py"


rule figure_comparison:
    """Figure 2: F1 and APCER/BPCER/ACER per model with bootstrap CI error bars."""
    input:
        metrics=eval_metric_files,
    output:
        **figure_outputs("figure2_comparison", "figure2.rst", "2 F1 and error rates"),
    log:
        "logs/figures/figure2_comparison.log",
    params:
        kind="comparison",
        models=TABLE_MODELS,
    script:
        "../scripts/figures.py"


rule figure_apcer_per_type:
    """Heat map of APCER per spoof type and model."""
    input:
        metrics=eval_metric_files,
    output:
        **figure_outputs(
            "apcer_per_type_heatmap", "apcer_heatmap.rst", "APCER per spoof type"
        ),
    log:
        "logs/figures/apcer_per_type_heatmap.log",
    params:
        kind="apcer_per_type",
        models=TABLE_MODELS,
    script:
        "../scripts/figures.py"


rule figure_roc_det:
    """ROC or DET curves of all models on the test split."""
    input:
        predictions=eval_prediction_files,
    output:
        **{
            ext: report(
                f"results/figures/{{curve}}_curves.{ext}",
                caption="../report/curves.rst",
                category="Figures",
                labels={"figure": "{curve} curves", "format": ext.upper()},
            )
            for ext in FIGURE_FORMATS
        },
    log:
        "logs/figures/{curve}_curves.log",
    wildcard_constraints:
        curve="roc|det",
    params:
        kind="{curve}",
        models=TABLE_MODELS,
    script:
        "../scripts/figures.py"


rule figure_training:
    """Training curves of one model (losses, validation F1 and error rates per epoch)."""
    input:
        history="results/models/{name}/history.csv",
        summary="results/models/{name}/summary.json",
    output:
        **{
            ext: report(
                f"results/figures/training/{{name}}.{ext}",
                caption="../report/training.rst",
                category="Training",
                labels={"model": "{name}", "format": ext.upper()},
            )
            for ext in FIGURE_FORMATS
        },
    log:
        "logs/figures/training_{name}.log",
    wildcard_constraints:
        name=MODEL_PATTERN,
    params:
        kind="training",
    script:
        "../scripts/figures.py"
