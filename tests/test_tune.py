"""Optuna studies: objective, search space, pruning, stale trials, resume after a kill, parallel workers.

The worker tests run the real claim/resume logic on a real journal file with a fast fake
objective; test_tune_workflow.py runs the real objective through Snakemake.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from conftest import tiny_config, tiny_data

from fasflow import tune, tune_journal
from fasflow.config import study_settings
from fasflow.errors import ConfigError

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[1]


def settings_of(scenario="S1", **tune_overrides) -> dict:
    """The tiny study's settings of `scenario` (2 epochs) with `tune_overrides`."""
    return study_settings(tiny_config({"train": {"max_epochs": 2}, "tune": tune_overrides}), scenario)


S1_PARAMS = {"lr": 1e-3, "weight_decay": 1e-4, "dropout": 0.1, "optimizer": "adamw"}


# ---------------------------------------------------------------- objective


def test_objective_with_fixed_trial_trains_and_returns_val_f1():
    trial = optuna.trial.FixedTrial(S1_PARAMS)
    value = tune.objective(trial, settings_of(), "S1", tiny_data(), tiny_data(12, seed=1))
    assert 0.0 <= value <= 1.0
    assert 1 <= trial.user_attrs["epochs"] <= 2
    assert 1 <= trial.user_attrs["best_epoch"] <= trial.user_attrs["epochs"]


def test_objective_uses_trial_patience_no_checkpoints_and_the_params():
    settings = settings_of("S3", patience=2, max_epochs=1)
    assert settings["hyperparameters"]["patience"] == 5
    seen = {}

    def fake_train(cfg, *arrays, outputs, teacher, on_epoch, checkpoint):
        seen.update(cfg=cfg, outputs=outputs, checkpoint=checkpoint, teacher=teacher, n=len(arrays))
        on_epoch(1, {"val_f1": 0.7})
        return {"epochs_run": 1, "best_epoch": 1, "val_metrics": {"f1": 0.7}}

    params = {**S1_PARAMS, "optimizer": "sgd", "alpha": 0.3, "temperature": 2.5}
    value = tune.objective(optuna.trial.FixedTrial(params), settings, "S3", tiny_data(), tiny_data(), teacher="T", train_fn=fake_train)
    cfg = seen["cfg"]
    assert value == 0.7
    assert (cfg.patience, cfg.max_epochs, cfg.distill) == (2, 1, True)  # trial patience, capped epochs
    assert (cfg.lr, cfg.weight_decay, cfg.dropout, cfg.optimizer, cfg.alpha, cfg.temperature) == (1e-3, 1e-4, 0.1, "sgd", 0.3, 2.5)
    assert seen["outputs"] is None and seen["checkpoint"] is False and seen["teacher"] == "T" and seen["n"] == 4


def test_search_space_follows_the_scenario():
    s1, s3 = settings_of("S1"), settings_of("S3")
    assert tune.tuned_param_names(s1) == ("lr", "weight_decay", "dropout", "optimizer")
    assert tune.tuned_param_names(s3)[-2:] == ("alpha", "temperature")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    space = s3["tune"]["search_space"]
    params = tune.suggest_params(trial, space, tune.tuned_param_names(s3))
    for name in ("lr", "weight_decay", "dropout", "alpha", "temperature"):
        assert space[name]["low"] <= params[name] <= space[name]["high"]
    assert params["optimizer"] in space["optimizer"]
    assert trial.distributions["lr"].log and not trial.distributions["dropout"].log
    # A FixedTrial without the distillation parameters cannot run S3.
    with pytest.raises(ValueError):
        tune.suggest_params(optuna.trial.FixedTrial(S1_PARAMS), space, tune.tuned_param_names(s3))


def test_paper_ranges_contain_the_paper_optima():
    space = yaml.safe_load((ROOT / "config/config.yaml").read_text())["tune"]["search_space"]
    found = {"lr": (9.73e-5, 2.60e-5), "weight_decay": (6.62e-4, 1.26e-3), "dropout": (0.313, 0.097), "alpha": (0.788,), "temperature": (3.069,)}
    for name, values in found.items():
        assert all(space[name]["low"] <= v <= space[name]["high"] for v in values), name
    assert "adamw" in space["optimizer"]


def test_pruned_trial_raises_trial_pruned():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0, n_warmup_steps=0))
    trial = study.ask()
    epochs = []

    def fake_train(cfg, *arrays, on_epoch, **kw):
        for epoch in (1, 2, 3):
            epochs.append(epoch)
            on_epoch(epoch, {"val_f1": 0.5})
        return {"epochs_run": 3, "best_epoch": 1, "val_metrics": {"f1": 0.5}}

    with pytest.raises(optuna.TrialPruned):
        tune.objective(trial, settings_of(), "S1", tiny_data(), tiny_data(), train_fn=fake_train)
    assert epochs == [1] and trial.user_attrs["epochs"] == 1


def test_sampler_and_pruner_are_explicit():
    settings = settings_of()
    sampler = tune.make_sampler(settings["tune"], seed=5)
    assert sampler._multivariate is True and sampler._constant_liar is True
    assert sampler._n_startup_trials == settings["tune"]["sampler"]["n_startup_trials"]
    pruner = tune.make_pruner(settings["tune"])
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    assert pruner._n_warmup_steps == settings["tune"]["pruner"]["n_warmup_steps"]


# ---------------------------------------------------------------- journal, workers, stale trials


def fake_objective(settings, value_of=lambda number: 0.5 + 0.01 * number, sleep=0.0):
    """An objective that samples the study's parameters but trains nothing."""

    def objective(trial):
        tune.suggest_params(trial, settings["tune"]["search_space"], tune.tuned_param_names(settings))
        time.sleep(sleep)
        return value_of(trial.number)

    return objective


def journal_trials(settings, journal):
    return tune.open_study(settings, "S1", journal).get_trials(deepcopy=False)


def finished_numbers(trials):
    return sorted(t.number for t in trials if t.state in tune.FINISHED)


def run_worker(settings, journal, worker=0, objective=None, **kw):
    return tune_journal.run_worker(settings, "S1", worker, journal, objective or fake_objective(settings), **kw)


def test_worker_runs_exactly_n_trials_and_rerun_adds_none(tmp_path):
    settings = settings_of(n_trials=3)
    journal = tmp_path / "journal.log"
    first = run_worker(settings, journal)
    assert [t["number"] for t in first["trials"]] == [0, 1, 2]
    again = run_worker(settings, journal)
    assert again["trials"] == []
    assert finished_numbers(journal_trials(settings, journal)) == [0, 1, 2]
    # More trials asked for later: the same study continues.
    settings["tune"]["n_trials"] = 4
    more = run_worker(settings, journal)
    assert [t["number"] for t in more["trials"]] == [3]


def test_failing_objective_does_not_count_and_is_replaced(tmp_path):
    settings = settings_of(n_trials=2)
    journal = tmp_path / "journal.log"

    def broken(trial):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_worker(settings, journal, objective=broken)
    run_worker(settings, journal)
    trials = journal_trials(settings, journal)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[0].user_attrs["fail_reason"] == "RuntimeError: boom"


def test_changed_inputs_are_flagged(tmp_path):
    settings = settings_of(n_trials=2)
    journal, manifest = tmp_path / "journal.log", tmp_path / "train.parquet"
    manifest.write_bytes(b"v1")
    run_worker(settings, journal, input_files={"train_manifest": str(manifest)})
    study = tune.load_study(settings, "S1", journal)
    assert len(tune.best_params(study, settings, "S1")["input_fingerprints"]) == 1
    settings["tune"]["n_trials"] = 3
    manifest.write_bytes(b"v2")
    run_worker(settings, journal, input_files={"train_manifest": str(manifest)})
    assert len(tune.best_params(tune.load_study(settings, "S1", journal), settings, "S1")["input_fingerprints"]) == 2


def test_changed_settings_refuse_the_old_journal(tmp_path):
    settings = settings_of(n_trials=1)
    journal = tmp_path / "journal.log"
    run_worker(settings, journal)
    settings["tune"]["search_space"]["lr"] = {"low": 1e-4, "high": 1e-2, "log": True}
    with pytest.raises(ConfigError, match="search_space"):
        run_worker(settings, journal)


def test_stale_by_heartbeat_for_other_hosts():
    study = optuna.create_study()
    trial = study.ask()
    for key, value in {"host": "another-node", "pid": 1, "pid_started": 0.0, "heartbeat": 1000.0}.items():
        trial.set_user_attr(key, value)
    assert tune_journal.stale_trials(study, grace_period=600, now=1000.0 + 599) == []
    assert [t.number for t in tune_journal.stale_trials(study, grace_period=600, now=1000.0 + 601)] == [0]


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, {src!r})
    from fasflow import tune, tune_journal  # light: torch is not imported by a fake objective
    settings = json.loads(Path({settings!r}).read_text())
    def fake_objective(sleep=0.0):
        def objective(trial):
            tune.suggest_params(trial, settings["tune"]["search_space"], tune.tuned_param_names(settings))
            time.sleep(sleep)
            return 0.5 + 0.01 * trial.number
        return objective
    go, mode, worker = Path({go!r}), {mode!r}, {worker}
    while not go.exists():
        time.sleep(0.05)
    if mode == "hang":  # trial 0 completes, trial 1 hangs until the test kills us
        objective = fake_objective(sleep=0.0)
        def hang(trial):
            if trial.number >= 1:
                Path({go!r} + ".hanging").write_text(str(trial.number))
                time.sleep(600)
            return objective(trial)
        result = tune_journal.run_worker(settings, "S1", worker, {journal!r}, hang)
    else:
        result = tune_journal.run_worker(settings, "S1", worker, {journal!r}, fake_objective(sleep=0.4))
    print("RESULT", json.dumps(result))
    """
)


def start_worker(tmp_path, settings, journal, worker, mode, go):
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    code = CHILD.format(
        src=str(ROOT / "src"), settings=str(tmp_path / "settings.json"),
        go=str(go), mode=mode, worker=worker, journal=str(journal),
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(path: Path, proc, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early: {proc.stderr.read()[-3000:]}")
        assert time.time() < deadline, f"timed out waiting for {path}"
        time.sleep(0.05)


def test_resume_after_kill_fails_only_the_dead_trial(tmp_path):
    settings = settings_of(n_trials=3)
    journal, go = tmp_path / "journal.log", tmp_path / "go"
    go.touch()
    proc = start_worker(tmp_path, settings, journal, 0, "hang", go)
    try:
        wait_for(Path(str(go) + ".hanging"), proc)
        trials = journal_trials(settings, journal)
        assert [t.state.name for t in trials] == ["COMPLETE", "RUNNING"]
        # The running trial belongs to a live process: it is not stale, and a second worker
        # leaves it alone and claims only what is left (1 complete + 1 running of 3 -> one more).
        assert tune_journal.stale_trials(tune.open_study(settings, "S1", journal), grace_period=600) == []
        sibling = run_worker(settings, journal, worker=1)
        assert [t["number"] for t in sibling["trials"]] == [2]
        assert journal_trials(settings, journal)[1].state.name == "RUNNING"
    finally:
        proc.send_signal(signal.SIGKILL)  # the "kill": no cleanup runs in the worker
        proc.wait()
    resumed = run_worker(settings, journal)
    trials = journal_trials(settings, journal)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].system_attrs["fail_reason"] == tune_journal.STALE_REASON  # the diagnostic is kept
    assert [t["number"] for t in resumed["trials"]] == [3]
    assert finished_numbers(trials) == [0, 2, 3]  # exactly n_trials, each counted once
    assert len({t.number for t in trials}) == len(trials)


def test_sigterm_marks_the_running_trial_failed(tmp_path):
    settings = settings_of(n_trials=3)
    journal, go = tmp_path / "journal.log", tmp_path / "go"
    go.touch()
    proc = start_worker(tmp_path, settings, journal, 0, "hang", go)
    wait_for(Path(str(go) + ".hanging"), proc)
    proc.send_signal(signal.SIGTERM)  # scancel / Snakemake shutting down
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert [t.state.name for t in journal_trials(settings, journal)] == ["COMPLETE", "FAIL"]


def test_two_parallel_workers_finish_exactly_n_trials(tmp_path):
    settings = settings_of(n_trials=5, workers=2)
    journal, go = tmp_path / "journal.log", tmp_path / "go"
    procs = [start_worker(tmp_path, settings, journal, w, "run", go) for w in (0, 1)]
    time.sleep(0.5)
    go.touch()  # both start together
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.split("RESULT", 1)[1]))
    ran = [t["number"] for r in results for t in r["trials"]]
    assert sorted(ran) == [0, 1, 2, 3, 4]  # no trial twice, none missing
    assert all(r["trials"] for r in results)  # both workers did work
    trials = journal_trials(settings, journal)
    assert finished_numbers(trials) == [0, 1, 2, 3, 4] and len(trials) == 5
    seeds = {t.user_attrs["sampler_seed"] for t in trials}
    assert len(seeds) == 5


def test_summary_outputs(tmp_path):
    settings = settings_of(n_trials=3)
    journal = tmp_path / "journal.log"
    values = {0: 0.6, 1: 0.9, 2: 0.7}
    run_worker(settings, journal, objective=fake_objective(settings, value_of=values.get))
    out = {k: tmp_path / f for k, f in {"best_params": "best_params.json", "trials": "trials.parquet", "history": "history.png", "importance": "importance.png"}.items()}
    best = tune.summarize(settings, "S1", journal, out)
    saved = json.loads(out["best_params"].read_text())
    assert saved["trial"] == 1 and saved["value"] == 0.9 and saved["n_trials"] == 3
    assert set(saved["params"]) == {"lr", "weight_decay", "dropout", "optimizer"}
    assert best["params"] == saved["params"]
    import polars as pl

    table = pl.read_parquet(out["trials"])
    assert table["number"].to_list() == [0, 1, 2] and table["state"].to_list() == ["COMPLETE"] * 3
    assert {"value", "duration_s", "epochs", "params_lr", "params_optimizer"} <= set(table.columns)
    for key in ("history", "importance"):
        assert out[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_importance_placeholder_with_one_complete_trial(tmp_path):
    settings = settings_of(n_trials=1)
    journal = tmp_path / "journal.log"
    run_worker(settings, journal)
    study = tune.load_study(settings, "S1", journal)
    tune.plot_importance(study, tmp_path / "importance.png", seed=0)
    assert (tmp_path / "importance.png").stat().st_size > 0


def test_summary_refuses_an_unfinished_study(tmp_path):
    settings = settings_of(n_trials=2)
    journal = tmp_path / "journal.log"
    run_worker(settings, journal)
    settings["tune"]["n_trials"] = 3
    with pytest.raises(Exception, match="2 finished trials, expected tune.n_trials = 3"):
        tune.summarize(settings, "S1", journal, {k: tmp_path / k for k in ("best_params", "trials", "history", "importance")})
    assert not (tmp_path / "best_params").exists()


# ---------------------------------------------------------------- through Snakemake, real objective

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
WORKFLOW_CONFIG = """
dataset:
  root: {root}/celeba
tune:
  n_trials: {n_trials}
  workers: {workers}
"""


def snakemake(work: Path, target: str, *args: str, n_trials=2, workers=1, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    (work / "tune.yaml").write_text(WORKFLOW_CONFIG.format(root=work, n_trials=n_trials, workers=workers))
    cmd = [
        *SNAKEMAKE, target, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), "--cores", "2",
        "--set-threads", "tune_worker=1", *args,
        "--configfile", str(ROOT / "tests/configs/tiny.yaml"), str(work / "tune.yaml"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)


def study_trials(journal: Path):
    study = optuna.load_study(study_name="fasflow-S1", storage=tune.journal_storage(journal))
    return study.get_trials(deepcopy=False)


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """A workdir with the tiny synthetic data's train/val caches already built."""
    import shutil

    work = tmp_path_factory.mktemp("tuneflow")
    shutil.copytree(ROOT / "config", work / "config")
    r = snakemake(work, "results/faces/val.npy")
    assert r.returncode == 0, r.stderr[-4000:]
    r = snakemake(work, "results/faces/train.npy")
    assert r.returncode == 0, r.stderr[-4000:]
    return work


@pytest.mark.workflow
def test_study_with_two_workers_through_snakemake(flow):
    r = snakemake(flow, "results/optuna/S1/best_params.json", n_trials=3, workers=2)
    assert r.returncode == 0, r.stderr[-4000:]
    study_dir = flow / "results/optuna/S1"
    trials = study_trials(study_dir / "journal.log")
    assert finished_numbers(trials) == [0, 1, 2] and len(trials) == 3
    markers = [json.loads((study_dir / f"workers/{w}.json").read_text()) for w in (0, 1)]
    assert sorted(t["number"] for m in markers for t in m["trials"]) == [0, 1, 2]
    best = json.loads((study_dir / "best_params.json").read_text())
    assert set(best["params"]) == {"lr", "weight_decay", "dropout", "optimizer"}
    assert best["n_trials"] == 3 and 0 <= best["value"] <= 1
    assert best["value"] == max(t.value for t in trials if t.state.name == "COMPLETE")
    import polars as pl

    assert pl.read_parquet(study_dir / "trials.parquet").height == 3
    for fig in ("history.png", "importance.png"):
        assert (study_dir / fig).stat().st_size > 0
    # Nothing of the test split was built for tuning.
    assert not (flow / "results/faces/test.npy").exists()


@pytest.mark.workflow
def test_killed_study_resumes_through_snakemake(flow):
    import shutil

    shutil.rmtree(flow / "results/optuna/S1", ignore_errors=True)
    journal = flow / "results/optuna/S1/journal.log"
    proc = snakemake(flow, "results/optuna/S1/best_params.json", n_trials=2, start_new_session=True)
    try:
        deadline = time.time() + 600
        while True:
            assert proc.poll() is None, "snakemake finished before it could be killed"
            assert time.time() < deadline, "no finished trial in time"
            states = [t.state.name for t in study_trials(journal)] if journal.exists() else []
            if states.count("COMPLETE") + states.count("PRUNED") == 1 and "RUNNING" in states:
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole job tree, as a lost node would
        proc.wait()
    before = study_trials(journal)
    first = next(t for t in before if t.state.name in ("COMPLETE", "PRUNED"))
    assert [t.state.name for t in before].count("RUNNING") == 1
    assert snakemake(flow, "results/optuna/S1/best_params.json", "--unlock", n_trials=2).returncode == 0
    r = snakemake(flow, "results/optuna/S1/best_params.json", n_trials=2)
    assert r.returncode == 0, r.stderr[-4000:]
    after = study_trials(journal)
    states = [t.state.name for t in after]
    assert len(finished_numbers(after)) == 2 and states.count("FAIL") == 1 and "RUNNING" not in states
    assert len({t.number for t in after}) == len(after)
    assert after[first.number].state == first.state and after[first.number].value == first.value  # kept, not rerun
    best = json.loads((flow / "results/optuna/S1/best_params.json").read_text())
    assert best["n_trials"] == 2 and best["n_failed"] == 1
