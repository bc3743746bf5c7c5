# Evaluation: test/val predictions -> metrics with subject-bootstrap CIs -> tables and figures.
# The only rules that read the test split; validation scores only fix thresholds.


rule predict:
    """Scores of one trained model on the test split and on the validation split (for thresholds)."""
    input:
        unpack(predict_inputs),
    output:
        test=results("predictions/{name}.parquet"),
        val=results("predictions/val/{name}.parquet"),
    log:
        logs("predict/{name}.log"),
    benchmark:
        benchmarks("predict/{name}.tsv")
    threads: 2
    params:
        batch_size=EVAL["batch_size"],
        device=EVAL["device"],
    script:
        "../scripts/predict.py"


rule metrics:
    """Every metric of one model on test (the paper's threshold 0.5 and validation-fixed thresholds) with CIs."""
    input:
        test=results("predictions/{name}.parquet"),
        val=results("predictions/val/{name}.parquet"),
    output:
        metrics=results("metrics/{name}.json"),
    log:
        logs("metrics/{name}.log"),
    benchmark:
        benchmarks("metrics/{name}.tsv")
    threads: 1
    params:
        bootstrap_n=EVAL["bootstrap_n"],
        seed=EVAL["seed"],
        ci_level=EVAL["ci_level"],
        bpcer_at_apcer=EVAL["bpcer_at_apcer"],
    script:
        "../scripts/metrics.py"


rule table_configuration:
    """Table 1: the hyperparameters each scenario was trained with (tuned values included)."""
    input:
        summaries=[model_files(f"models/{s}")["summary"] for s in SCENARIOS],
        best_params=tuned_best_params(),
    output:
        **table_outputs("table1_configuration", "table1.rst", "1 configuration"),
    log:
        logs("tables/table1_configuration.log"),
    params:
        models=SCENARIOS,
        scenarios=config["scenarios"],
        tune=config["tune"],
    script:
        "../scripts/table1_configuration.py"


rule table_classification:
    """Table 2: accuracy, precision, recall, F1, ROC-AUC with CIs and paired comparisons with the reference."""
    input:
        metrics=eval_files("metrics"),
        predictions=eval_files("predictions"),
    output:
        **table_outputs("table2_classification", "table2.rst", "2 classification"),
    log:
        logs("tables/table2_classification.log"),
    params:
        models=TABLE_MODELS,
        reference=EVAL["reference"],
        bootstrap_n=EVAL["bootstrap_n"],
        seed=EVAL["seed"],
        ci_level=EVAL["ci_level"],
    script:
        "../scripts/table2_classification.py"


rule table_comparisons:
    """Every model against the reference: paired subject-bootstrap differences, Holm-adjusted p-values."""
    input:
        predictions=eval_files("predictions"),
    output:
        **table_outputs("comparisons", "comparisons.rst", "paired comparisons"),
    log:
        logs("tables/comparisons.log"),
    params:
        models=TABLE_MODELS,
        reference=EVAL["reference"],
        bootstrap_n=EVAL["bootstrap_n"],
        seed=EVAL["seed"],
        ci_level=EVAL["ci_level"],
    script:
        "../scripts/table_comparisons.py"


rule table_protocol:
    """The CelebA-Spoof benchmark's view: TPR at FPR 1%/0.5%/0.1% next to APCER/BPCER/ACER/AUC/EER."""
    input:
        metrics=eval_files("metrics"),
    output:
        **table_outputs("protocol", "protocol.rst", "CelebA-Spoof benchmark"),
    log:
        logs("tables/protocol.log"),
    params:
        models=TABLE_MODELS,
        protocol=PROTOCOL,
    script:
        "../scripts/table_protocol.py"


rule table_antispoofing:
    """Table 3: APCER, BPCER, ACER with CIs, APCER_PAIS, ACER_ISO, EER, HTER, BPCER at fixed APCER."""
    input:
        metrics=eval_files("metrics"),
    output:
        **table_outputs("table3_antispoofing", "table3.rst", "3 anti-spoofing"),
    log:
        logs("tables/table3_antispoofing.log"),
    params:
        models=TABLE_MODELS,
        bpcer_at_apcer=EVAL["bpcer_at_apcer"],
    script:
        "../scripts/table3_antispoofing.py"


rule table_apcer_per_type:
    """APCER of each spoof type (PAI species) per model."""
    input:
        metrics=eval_files("metrics"),
    output:
        **table_outputs("apcer_per_type", "apcer_per_type.rst", "APCER per spoof type"),
    log:
        logs("tables/apcer_per_type.log"),
    params:
        models=TABLE_MODELS,
    script:
        "../scripts/apcer_per_type.py"


rule figure_confusion_matrices:
    """Figure 1: confusion matrices of all models on the test split."""
    input:
        metrics=eval_files("metrics"),
    output:
        **figure_outputs(
            "figure1_confusion_matrices", "figure1.rst", "1 confusion matrices"
        ),
    log:
        logs("figures/figure1_confusion_matrices.log"),
    params:
        models=TABLE_MODELS,
    script:
        "../scripts/figure_confusion_matrices.py"


rule figure_comparison:
    """Figure 2: F1 and APCER/BPCER/ACER per model with bootstrap CI error bars."""
    input:
        metrics=eval_files("metrics"),
    output:
        **figure_outputs("figure2_comparison", "figure2.rst", "2 F1 and error rates"),
    log:
        logs("figures/figure2_comparison.log"),
    params:
        models=TABLE_MODELS,
    script:
        "../scripts/figure_comparison.py"


rule figure_apcer_per_type:
    """Heat map of APCER per spoof type and model."""
    input:
        metrics=eval_files("metrics"),
    output:
        **figure_outputs(
            "apcer_per_type_heatmap", "apcer_heatmap.rst", "APCER per spoof type"
        ),
    log:
        logs("figures/apcer_per_type_heatmap.log"),
    params:
        models=TABLE_MODELS,
    script:
        "../scripts/figure_apcer_per_type.py"


rule figure_curves:
    """ROC or DET curves of all models on the test split."""
    input:
        predictions=eval_files("predictions"),
    output:
        **figure_outputs("{curve}_curves", "curves.rst", "{curve} curves"),
    log:
        logs("figures/{curve}_curves.log"),
    params:
        models=TABLE_MODELS,
        curve="{curve}",
    script:
        "../scripts/figure_curves.py"


rule figure_training:
    """Training curves of one model (losses, validation F1 and error rates per epoch)."""
    input:
        history=model_files("models/{name}")["history"],
        summary=model_files("models/{name}")["summary"],
    output:
        **figure_outputs("training/{name}", "training.rst", "{name}", "Training"),
    log:
        logs("figures/training_{name}.log"),
    params:
        name="{name}",
    script:
        "../scripts/figure_training.py"
