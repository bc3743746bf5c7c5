# Optuna studies of the tuned scenarios (S1, S3). Inputs are the train and val splits (and the
# frozen teacher for distilled scenarios) only: never test. The study lives in
# results/optuna/{scenario}/journal.log, shared by the workers and kept when a job is killed.


rule tune_worker:
    """One worker of a scenario's study: runs trials until the study has tune.n_trials finished ones."""
    input:
        unpack(tune_inputs),
    output:
        done=results("optuna/{scenario}/workers/{worker}.json"),
    log:
        logs("tune/{scenario}/worker{worker}.log"),
    benchmark:
        benchmarks("tune/{scenario}/worker{worker}.tsv")
    priority: 1
    threads: 2
    params:
        scenario="{scenario}",
        worker="{worker}",
        settings=tuning_settings,
        journal=results("optuna/{scenario}/journal.log"),
    script:
        "../scripts/tune_worker.py"


rule tune_study:
    """Best parameters (read by train_student), trials table and figures of a finished study."""
    input:
        workers=tune_worker_outputs,
    output:
        best_params=results("optuna/{scenario}/best_params.json"),
        trials=results("optuna/{scenario}/trials.parquet"),
        history=report_file(
            results("optuna/{scenario}/history.png"),
            "optuna_history.rst",
            "Optuna",
            scenario="{scenario}",
            figure="optimisation history",
        ),
        importance=report_file(
            results("optuna/{scenario}/importance.png"),
            "optuna_importance.rst",
            "Optuna",
            scenario="{scenario}",
            figure="parameter importance",
        ),
    log:
        logs("tune/{scenario}/study.log"),
    benchmark:
        benchmarks("tune/{scenario}/study.tsv")
    priority: 1
    threads: 1
    params:
        scenario="{scenario}",
        settings=tuning_settings,
        journal=results("optuna/{scenario}/journal.log"),
    script:
        "../scripts/tune_study.py"
