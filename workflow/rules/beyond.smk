# Beyond the paper, continued: cross-dataset tests and the student zoo.
# External sets (results/external/<set>/) are ingested with the CelebA-Spoof policies, cached by the
# face cache rule and scored by every trained model; thresholds come from CelebA-Spoof validation.
# Zoo models (results/models/<name>/) are trained by the student rule with another architecture
# and then predicted, measured, exported, quantised and timed by the main rules ({name}).


rule synthesize_external:
    """Write a synthetic external test set in another capture style (the demo's domain shift)."""
    output:
        marker="{external_root}/EXTERNAL.json",
    log:
        logs("synthesize_external/{external_root}.log"),
    params:
        root="{external_root}",
        synthetic=synthetic_external_settings,
    script:
        "../scripts/synthesize_external.py"


rule ingest_external:
    """List an external set's images (folder or table), locate each face and count every problem, as ingest does."""
    input:
        unpack(external_source),
    output:
        images=results("external/{ext}/images.parquet"),
        report=results("external/{ext}/ingest_report.json"),
    log:
        logs("external/{ext}/ingest.log"),
    benchmark:
        benchmarks("external/{ext}/ingest.tsv")
    threads: 4
    params:
        name="{ext}",
        spec=external_spec,
        policies=config["ingest"],
    script:
        "../scripts/ingest_external.py"


use rule face_cache as external_face_cache with:
    input:
        manifest=results("external/{ext}/images.parquet"),
    output:
        faces=results("external/{ext}/faces.npy"),
        faces_manifest=results("external/{ext}/faces.parquet"),
        report=results("external/{ext}/faces.json"),
    log:
        logs("external/{ext}/face_cache.log"),
    benchmark:
        benchmarks("external/{ext}/face_cache.tsv")
    params:
        root=external_root,


rule predict_external:
    """Scores of one trained model (the study's or the zoo's) on one external set."""
    input:
        weights=model_files("models/{name}")["weights"],
        summary=model_files("models/{name}")["summary"],
        faces=results("external/{ext}/faces.npy"),
        manifest=results("external/{ext}/faces.parquet"),
    output:
        predictions=results("external/{ext}/predictions/{name}.parquet"),
    log:
        logs("external/{ext}/predict/{name}.log"),
    benchmark:
        benchmarks("external/{ext}/predict/{name}.tsv")
    threads: 2
    params:
        batch_size=EVAL["batch_size"],
        device=EVAL["device"],
    script:
        "../scripts/predict_external.py"


rule table_cross_dataset:
    """Every model on every external set at the CelebA-Spoof validation EER threshold, 0.5 and the oracle; ROC figure."""
    input:
        unpack(cross_dataset_inputs),
    output:
        **table_outputs(
            "cross_dataset", "cross_dataset.rst", "cross-dataset", "Beyond the paper"
        ),
        **figure_outputs(
            "cross_dataset_roc",
            "cross_dataset.rst",
            "cross-dataset ROC",
            "Beyond the paper",
        ),
    log:
        logs("tables/cross_dataset.log"),
    params:
        sets=list(EXTERNAL_TESTS),
        models=SCORED_MODELS,
        bootstrap_n=EVAL["bootstrap_n"],
        seed=EVAL["seed"],
        level=EVAL["ci_level"],
    script:
        "../scripts/table_cross_dataset.py"


use rule train_student as train_zoo_student with:
    input:
        unpack(zoo_student_inputs),
    output:
        **model_files("models/{student}"),
    log:
        logs("train/{student}.log"),
    benchmark:
        benchmarks("train/{student}.tsv")
    params:
        name="{student}",
        settings=zoo_training_settings,


rule table_zoo:
    """Zoo table: accuracy and ACER with intervals next to parameters, ONNX size, FP32/INT8 latency; ACER-latency figure."""
    input:
        unpack(zoo_table_inputs),
    output:
        **table_outputs("zoo", "zoo.rst", "student zoo", "Beyond the paper"),
        **figure_outputs("zoo_pareto", "zoo.rst", "student zoo", "Beyond the paper"),
    log:
        logs("tables/zoo.log"),
    params:
        models=ZOO_TABLE_MODELS,
        archs=zoo_architectures(),
        recipes=zoo_recipes(),
        references=ZOO_REFERENCES,
    script:
        "../scripts/table_zoo.py"
