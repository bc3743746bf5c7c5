# Optuna studies of the tuned scenarios (S1, S3). Inputs are the train and val splits (and the
# frozen teacher for distilled scenarios) only: never test. The study lives in
# results/optuna/{scenario}/journal.log, shared by the workers and kept when a job is killed.


rule tune_worker:
    """One worker of a scenario's study: runs trials until the study has tune.n_trials finished ones."""
    input:
        unpack(tune_inputs),
    output:
        done="results/optuna/{scenario}/workers/{worker}.json",
    log:
        "logs/tune/{scenario}/worker{worker}.log",
    benchmark:
        "benchmarks/tune/{scenario}/worker{worker}.tsv"
    wildcard_constraints:
        scenario=TUNED_PATTERN,
        worker=r"\d+",
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=8,
        mem_mb=16000,
        runtime=600,
    params:
        config=tune_settings,
        journal="results/optuna/{scenario}/journal.log",
    script:
        "../scripts/tune_worker.py"


rule tune_study:
    """Best parameters (read by train_student), trials table and figures of a finished study."""
    input:
        workers=tune_worker_outputs,
    output:
        best_params="results/optuna/{scenario}/best_params.json",
        trials="results/optuna/{scenario}/trials.parquet",
        history=report(
            "results/optuna/{scenario}/history.png",
            caption="../report/optuna_history.rst",
            category="Optuna",
            labels={"scenario": "{scenario}", "figure": "optimisation history"},
        ),
        importance=report(
            "results/optuna/{scenario}/importance.png",
            caption="../report/optuna_importance.rst",
            category="Optuna",
            labels={"scenario": "{scenario}", "figure": "parameter importance"},
        ),
    log:
        "logs/tune/{scenario}/study.log",
    benchmark:
        "benchmarks/tune/{scenario}/study.tsv"
    wildcard_constraints:
        scenario=TUNED_PATTERN,
    threads: 1
    params:
        config=tune_settings,
        journal="results/optuna/{scenario}/journal.log",
    script:
        "../scripts/tune_study.py"
