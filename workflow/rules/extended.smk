# Beyond the paper: seed replicates, the identity-leakage ablation, leave-one-attack-type-out.
# Each variant's models live under results/<variant>/ in the main study's layout
# (variant = replicates/seed<N>, leakage, leakage/seed<N>, cross_attack/without_<type>) and are trained,
# scored and measured by the main rules, reused with `use rule ... as ... with:`.
rule leakage_split:
    """The main study's subset re-split at image level at random (identities shared): the leakage control."""
    input:
        unpack(leakage_split_inputs),
    output:
        train=results("leakage/splits/train.parquet"),
        val=results("leakage/splits/val.parquet"),
        test=results("leakage/splits/test.parquet"),
        report=results("leakage/splits/split_report.json"),
    log:
        logs("leakage/split.log"),
    params:
        fractions=config["split"]["fractions"],
        seed=LEAKAGE["seed"],
    script:
        "../scripts/leakage_split.py"


use rule face_cache as leakage_face_cache with:
    input:
        manifest=results("leakage/splits/{split}.parquet"),
    output:
        faces=results("leakage/faces/{split}.npy"),
        faces_manifest=results("leakage/faces/{split}.parquet"),
        report=results("leakage/faces/{split}.json"),
    log:
        logs("leakage/face_cache/{split}.log"),
    benchmark:
        benchmarks("leakage/face_cache/{split}.tsv")


use rule train_teacher as leakage_train_teacher with:
    input:
        **split_files("train", "val", folder="leakage/"),
        **pretrained_inputs(config["models"]["teacher"]),
    output:
        **model_files("leakage/models/teacher"),
    log:
        logs("leakage/train/teacher.log"),
    benchmark:
        benchmarks("leakage/train/teacher.tsv")


use rule train_student as leakage_train_student with:
    input:
        unpack(leakage_student_inputs),
    output:
        **model_files("leakage/models/{scenario}"),
    log:
        logs("leakage/train/{scenario}.log"),
    benchmark:
        benchmarks("leakage/train/{scenario}.tsv")
    params:
        name="{scenario}",
        settings=training_settings,
        variant="leakage",


use rule train_student as leakage_seed_train_student with:
    input:
        unpack(leakage_student_inputs),
    output:
        **model_files("leakage/seed{seed}/models/{scenario}"),
    log:
        logs("leakage/seed{seed}/train/{scenario}.log"),
    benchmark:
        benchmarks("leakage/seed{seed}/train/{scenario}.tsv")
    params:
        name="{scenario}",
        settings=training_settings,
        seed=replicate_seed,
        variant="leakage/seed{seed}",


use rule train_student as replicate_train_student with:
    input:
        unpack(replicate_student_inputs),
    output:
        **model_files("replicates/seed{seed}/models/{scenario}"),
    log:
        logs("replicates/seed{seed}/train/{scenario}.log"),
    benchmark:
        benchmarks("replicates/seed{seed}/train/{scenario}.tsv")
    params:
        name="{scenario}",
        settings=training_settings,
        seed=replicate_seed,
        variant="replicates/seed{seed}",


use rule tune_worker as replicate_tune_worker with:
    output:
        done=results("replicates/seed{seed}/optuna/{scenario}/workers/{worker}.json"),
    log:
        logs("replicates/seed{seed}/tune/{scenario}/worker{worker}.log"),
    benchmark:
        benchmarks("replicates/seed{seed}/tune/{scenario}/worker{worker}.tsv")
    params:
        scenario="{scenario}",
        worker="{worker}",
        settings=replicate_tuning_settings,
        journal=results("replicates/seed{seed}/optuna/{scenario}/journal.log"),


use rule tune_study as replicate_tune_study with:
    input:
        workers=replicate_tune_worker_outputs,
    output:
        best_params=results("replicates/seed{seed}/optuna/{scenario}/best_params.json"),
        trials=results("replicates/seed{seed}/optuna/{scenario}/trials.parquet"),
        history=results("replicates/seed{seed}/optuna/{scenario}/history.png"),
        importance=results("replicates/seed{seed}/optuna/{scenario}/importance.png"),
    log:
        logs("replicates/seed{seed}/tune/{scenario}/study.log"),
    benchmark:
        benchmarks("replicates/seed{seed}/tune/{scenario}/study.tsv")
    params:
        scenario="{scenario}",
        settings=replicate_tuning_settings,
        journal=results("replicates/seed{seed}/optuna/{scenario}/journal.log"),


use rule train_student as cross_attack_train_student with:
    output:
        **model_files("cross_attack/without_{spoof_type}/models/{scenario}"),
    log:
        logs("cross_attack/without_{spoof_type}/train/{scenario}.log"),
    benchmark:
        benchmarks("cross_attack/without_{spoof_type}/train/{scenario}.tsv")
    params:
        name="{scenario}",
        settings=training_settings,
        exclude_spoof_type="{spoof_type}",
        variant="cross_attack/without_{spoof_type}",


use rule predict as predict_variant with:
    input:
        unpack(variant_predict_inputs),
    output:
        test=results("{variant}/predictions/{name}.parquet"),
        val=results("{variant}/predictions/val/{name}.parquet"),
    log:
        logs("{variant}/predict/{name}.log"),
    benchmark:
        benchmarks("{variant}/predict/{name}.tsv")


use rule metrics as metrics_variant with:
    input:
        test=results("{variant}/predictions/{name}.parquet"),
        val=results("{variant}/predictions/val/{name}.parquet"),
    output:
        metrics=results("{variant}/metrics/{name}.json"),
    log:
        logs("{variant}/metrics/{name}.log"),
    benchmark:
        benchmarks("{variant}/metrics/{name}.tsv")


rule table_replicates:
    """Mean, SD and t-interval of each metric across seeds, paired t-tests, and the spread figure."""
    input:
        metrics=replicate_metric_files(),
    output:
        **table_outputs(
            "replicates", "replicates.rst", "seed replicates", "Beyond the paper"
        ),
        **figure_outputs(
            "replicates", "replicates.rst", "seed replicates", "Beyond the paper"
        ),
    log:
        logs("tables/replicates.log"),
    params:
        scenarios=REPLICATES["scenarios"],
        seeds=REPLICATES["seeds"],
        reference=REPLICATES["reference"],
        level=EVAL["ci_level"],
        tuned=[s for s in REPLICATES["scenarios"] if config["scenarios"][s]["tune"]],
        retune=REPLICATES["retune"],
    script:
        "../scripts/table_replicates.py"


rule table_leakage:
    """ACER, APCER, BPCER, F1 on the subject-disjoint vs the random split, with bootstrap intervals."""
    input:
        disjoint=leakage_predictions("disjoint"),
        random=leakage_predictions("random"),
        disjoint_train=results("faces/train.parquet"),
        disjoint_test=results("faces/test.parquet"),
        random_train=results("leakage/faces/train.parquet"),
        random_test=results("leakage/faces/test.parquet"),
    output:
        **table_outputs(
            "leakage", "leakage.rst", "identity leakage", "Beyond the paper"
        ),
    log:
        logs("tables/leakage.log"),
    params:
        scenarios=LEAKAGE["scenarios"],
        training_seeds=leakage_seeds(),
        bootstrap_n=EVAL["bootstrap_n"],
        seed=EVAL["seed"],
        level=EVAL["ci_level"],
    script:
        "../scripts/table_leakage.py"


rule table_cross_attack:
    """APCER on each left-out spoof type next to the main S0's APCER on that type."""
    input:
        unseen=cross_attack_predictions,
        seen=results("predictions/S0.parquet"),
    output:
        **table_outputs(
            "cross_attack", "cross_attack.rst", "cross attack", "Beyond the paper"
        ),
    log:
        logs("tables/cross_attack.log"),
    params:
        spoof_types=CROSS_ATTACK["spoof_types"],
        bootstrap_n=EVAL["bootstrap_n"],
        seed=EVAL["seed"],
        level=EVAL["ci_level"],
    script:
        "../scripts/table_cross_attack.py"
