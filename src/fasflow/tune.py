"""Optuna studies for the tuned scenarios (S1, S3): resumable, parallel, leak-free.

One study per scenario lives in an Optuna journal file, results/optuna/{scenario}/journal.log.
Any number of workers (Snakemake jobs, possibly SLURM jobs) share it:

- A worker claims a trial under a lock (`claim_trial`): it first fails trials left RUNNING by
  processes that are gone, then counts the finished (COMPLETE or PRUNED) and running trials and
  asks for a new trial only while finished + running < n_trials. Count and ask happen under one
  lock, so W workers together create exactly n_trials trials that finish (a failed trial does
  not count and is replaced on the next run).
- A trial is stale when its process is provably gone (same host, pid not alive or reused) or,
  for trials of another host, when its heartbeat (a user attribute refreshed by a thread every
  `tune.heartbeat_interval` seconds) is older than `tune.grace_period`. Journal storage has no
  built-in heartbeat (Optuna's heartbeat_interval/grace_period are RDBStorage-only).
- The objective is the best validation F1 of a train_model run with early-stopping patience
  `tune.patience`, no checkpoints; each epoch's validation F1 is reported for pruning.

The test split is never an argument here.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import optuna
import polars as pl
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

from .errors import ConfigError, FasflowError
from .io import write_json, write_parquet
from .runlog import get_logger

if TYPE_CHECKING:  # torch is imported only where a trial trains (workers stay light otherwise)
    from .train import TrainConfig

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # pruned trials are finished trials: they count
BASE_PARAMS = ("lr", "weight_decay", "dropout", "optimizer")
DISTILL_PARAMS = ("alpha", "temperature")
SETTINGS_ATTR = "fasflow_settings"
# Trials this process is running right now: a RUNNING trial naming this pid but not listed
# here was left behind by an earlier, interrupted run inside the same process (tests).
_ACTIVE_TRIALS: set[int] = set()


def study_name(scenario: str) -> str:
    """Fixed per scenario, so every worker and every rerun joins the same study."""
    return f"fasflow-{scenario}"


def tuned_param_names(config: dict, scenario: str) -> tuple[str, ...]:
    distill = config["scenarios"][scenario]["distill"]
    return BASE_PARAMS + (DISTILL_PARAMS if distill else ())


def suggest_params(trial: optuna.trial.BaseTrial, search_space: dict, names: tuple[str, ...]) -> dict:
    """Sample the hyperparameters `names` from `tune.search_space`."""
    params = {}
    for name in names:
        if name not in search_space:
            raise ConfigError(f"tune.search_space.{name} is missing (needed by this scenario)")
        space = search_space[name]
        if name == "optimizer":
            params[name] = trial.suggest_categorical(name, list(space))
        else:
            low, high = float(space["low"]), float(space["high"])
            if not low < high:
                raise ConfigError(f"tune.search_space.{name}: low ({low}) must be below high ({high})")
            params[name] = trial.suggest_float(name, low, high, log=bool(space.get("log", False)))
    return params


def trial_config(config: dict, scenario: str, params: dict) -> TrainConfig:
    """The scenario's TrainConfig with the trial's parameters, tuning patience and epoch cap."""
    from .recipes import train_config

    tune = config["tune"]
    cfg = train_config(config, scenario, overrides={**params, "patience": tune["patience"]})
    cfg.max_epochs = trial_max_epochs(config)
    return cfg


def trial_max_epochs(config: dict) -> int:
    """train.max_epochs, capped by tune.max_epochs when that is set."""
    cap = config["tune"].get("max_epochs")
    return min(int(config["train"]["max_epochs"]), int(cap)) if cap else int(config["train"]["max_epochs"])


def objective(
    trial: optuna.trial.BaseTrial,
    config: dict,
    scenario: str,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    teacher=None,
    train_fn: Callable[..., dict] | None = None,
) -> float:
    """Best validation F1 of one training run; prunes on per-epoch validation F1."""
    if train_fn is None:
        from .train import train_model as train_fn
    params = suggest_params(trial, config["tune"]["search_space"], tuned_param_names(config, scenario))
    cfg = trial_config(config, scenario, params)
    epochs = []

    def report(epoch: int, row: dict) -> None:
        epochs.append(epoch)
        trial.report(row["val_f1"], epoch)
        if trial.should_prune():
            trial.set_user_attr("epochs", epoch)
            raise optuna.TrialPruned(f"pruned after epoch {epoch} (val F1 {row['val_f1']:.4f})")

    summary = train_fn(cfg, *train, *val, out_dir=None, teacher=teacher, on_epoch=report, checkpoint=False)
    trial.set_user_attr("epochs", summary["epochs_run"])
    trial.set_user_attr("best_epoch", summary["best_epoch"])
    value = float(summary["val_metrics"]["f1"])
    if not math.isfinite(value):
        raise FasflowError(f"{scenario} trial {getattr(trial, 'number', '?')}: validation F1 is {value}")
    return value


# ---------------------------------------------------------------- storage and study


def journal_storage(journal_path: str | Path) -> JournalStorage:
    """Journal file storage; the O_EXCL open lock works on local disks and NFSv3+."""
    path = Path(journal_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def make_sampler(tune: dict, seed: int) -> optuna.samplers.TPESampler:
    # Every argument explicit: Optuna 4 and 5 differ in the defaults of multivariate/constant_liar.
    s = tune["sampler"]
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=s["n_startup_trials"],
        multivariate=s["multivariate"],
        constant_liar=s["constant_liar"],
    )


def make_pruner(tune: dict) -> optuna.pruners.BasePruner:
    p = tune["pruner"]
    if not p["enabled"]:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=p["n_startup_trials"], n_warmup_steps=p["n_warmup_steps"], interval_steps=1
    )


def study_settings(config: dict, scenario: str) -> dict:
    """What defines a study's trials; a journal made with other settings is not continued."""
    tune, train = config["tune"], config["train"]
    names = tuned_param_names(config, scenario)
    fixed = {k: v for k, v in config["scenarios"][scenario].items() if k not in names and k not in ("tune", "patience")}
    return {
        "scenario": scenario,
        "fixed": fixed,
        "search_space": {k: tune["search_space"][k] for k in names if k in tune["search_space"]},
        "patience": tune["patience"],
        "max_epochs": trial_max_epochs(config),
        "sampler": tune["sampler"],
        "pruner": tune["pruner"],
        "seed": tune["seed"],
        "train": {k: train[k] for k in ("input_size", "batch_size", "seed", "class_weighted")},
        "models": {k: config["models"][k] for k in ("student", "teacher", "pretrained")},
    }


def open_study(config: dict, scenario: str, storage: JournalStorage, sampler_seed: int | None = None) -> optuna.Study:
    """Create or load the scenario's study; refuse a journal made with different settings."""
    tune = config["tune"]
    study = optuna.create_study(
        study_name=study_name(scenario),
        storage=storage,
        direction="maximize",
        sampler=make_sampler(tune, tune["seed"] if sampler_seed is None else sampler_seed),
        pruner=make_pruner(tune),
        load_if_exists=True,
    )
    settings = _jsonable(study_settings(config, scenario))
    recorded = study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
    elif recorded != settings:
        changed = sorted(k for k in settings.keys() | recorded.keys() if settings.get(k) != recorded.get(k))
        raise ConfigError(
            f"the Optuna study {study_name(scenario)!r} in {_storage_path(storage)} was made with other "
            f"settings ({', '.join(changed)} differ from the config). Restore the config, or delete that "
            f"journal to start a new study."
        )
    return study


def _storage_path(storage: JournalStorage) -> str:
    return getattr(storage._backend, "_file_path", "the journal")


def _jsonable(obj):
    """Settings as they come back from the journal (JSON: tuples become lists)."""
    import json

    return json.loads(json.dumps(obj))


# ---------------------------------------------------------------- stale trials


def _process_identity() -> dict:
    import psutil

    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": psutil.Process().create_time()}


def _process_gone(attrs: dict) -> bool | None:
    """True if the trial's process is provably gone, False if alive, None if unknown (other host)."""
    import psutil

    if attrs.get("host") != socket.gethostname() or "pid" not in attrs:
        return None
    pid = int(attrs["pid"])
    try:
        proc = psutil.Process(pid)
        started = proc.create_time()
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
    except psutil.NoSuchProcess:
        return True
    if abs(started - float(attrs.get("pid_started", started))) > 1.0:
        return True  # the pid was reused by another process
    return False


def stale_trials(study: optuna.Study, grace_period: float, now: float | None = None) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials whose process is gone (same host) or whose heartbeat is too old (other hosts)."""
    now = time.time() if now is None else now
    stale = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("pid") == os.getpid() and attrs.get("host") == socket.gethostname():
            if trial._trial_id not in _ACTIVE_TRIALS:
                stale.append(trial)
            continue
        gone = _process_gone(attrs)
        if gone is None:
            last = attrs.get("heartbeat")
            if last is None and trial.datetime_start is not None:
                last = trial.datetime_start.timestamp()
            gone = last is not None and now - float(last) > grace_period
        if gone:
            stale.append(trial)
    return stale


def fail_stale_trials(study: optuna.Study, storage: JournalStorage, grace_period: float) -> list[int]:
    """Mark stale RUNNING trials FAIL (they then never count); returns their numbers."""
    failed = []
    for trial in stale_trials(study, grace_period):
        try:
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            storage.set_trial_system_attr(trial._trial_id, "fail_reason", "stale: its process is gone")
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        failed.append(trial.number)
    if failed:
        get_logger().warning("%s: marked stale trials %s as FAIL (their process is gone)", study.study_name, failed)
    return failed


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts = {s.name: 0 for s in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] += 1
    return counts


@contextlib.contextmanager
def _heartbeat(storage: JournalStorage, trial_id: int, interval: float) -> Iterator[None]:
    """Refresh the trial's heartbeat attribute from a thread while the objective runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
            except (optuna.exceptions.UpdateFinishedTrialError, KeyError, RuntimeError):
                return

    thread = threading.Thread(target=beat, name=f"optuna-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# ---------------------------------------------------------------- worker


def claim_trial(study: optuna.Study, storage: JournalStorage, tune: dict, worker: int, lock: JournalFileOpenLock):
    """Under the claim lock: fail stale trials, then ask for a trial if the study still needs one."""
    lock.acquire()
    try:
        fail_stale_trials(study, storage, tune["grace_period"])
        counts = state_counts(study)
        finished = sum(counts[s.name] for s in FINISHED)
        if finished + counts["RUNNING"] >= tune["n_trials"]:
            return None, counts
        number = len(study.get_trials(deepcopy=False))  # the number the next trial will get
        # Own seed per worker, offset by the trial number: a resumed worker does not redraw
        # the points it drew before it was killed.
        seed = int(tune["seed"]) + 1000 * worker + number
        study.sampler = make_sampler(tune, seed)
        trial = study.ask()
        for key, value in {**_process_identity(), "worker": worker, "sampler_seed": seed, "heartbeat": time.time()}.items():
            trial.set_user_attr(key, value)
        return trial, counts
    finally:
        lock.release()


def run_worker(
    config: dict,
    scenario: str,
    worker: int,
    journal_path: str | Path,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    teacher=None,
    objective_fn: Callable[..., float] = objective,
    input_files: dict[str, str] | None = None,
) -> dict:
    """Run trials of the scenario's study until it has n_trials finished or claimed trials.

    `input_files` (name -> path: manifests, teacher weights) are fingerprinted into every trial,
    so a study whose inputs changed between runs is flagged in best_params.json.
    """
    log = get_logger()
    tune = config["tune"]
    storage = journal_storage(journal_path)
    study = open_study(config, scenario, storage)
    fingerprint = input_fingerprint(input_files or {})
    lock = JournalFileOpenLock(str(journal_path) + ".claim")
    ran: list[dict] = []
    started = time.perf_counter()
    with _sigterm_as_exit():
        while True:
            trial = _run_one_trial(study, storage, tune, worker, lock, config, scenario, train, val, teacher, objective_fn, fingerprint)
            if trial is None:
                break
            ran.append(trial)
    counts = state_counts(study)
    log.info("%s worker %d: done after %d trial(s); study: %s", scenario, worker, len(ran), _fmt_counts(counts))
    return {
        "scenario": scenario,
        "study_name": study.study_name,
        "worker": worker,
        "trials": ran,
        "seconds": time.perf_counter() - started,
        "study_counts": counts,
    }


def _run_one_trial(study, storage, tune, worker, lock, config, scenario, train, val, teacher, objective_fn, fingerprint) -> dict | None:
    """Claim, run and record one trial; None when the study needs no more."""
    log = get_logger()
    trial, counts = claim_trial(study, storage, tune, worker, lock)
    if trial is None:
        return None
    if fingerprint:
        trial.set_user_attr("inputs", fingerprint)
    log.info("%s worker %d: trial %d (study so far: %s)", scenario, worker, trial.number, _fmt_counts(counts))
    _ACTIVE_TRIALS.add(trial._trial_id)
    t0 = time.perf_counter()
    try:
        with _heartbeat(storage, trial._trial_id, tune["heartbeat_interval"]):
            value = objective_fn(trial, config, scenario, train, val, teacher)
    except optuna.TrialPruned as exc:
        frozen = study.tell(trial, state=TrialState.PRUNED)
        log.info("%s trial %d: %s", scenario, trial.number, exc)
    except BaseException:
        with contextlib.suppress(Exception):
            study.tell(trial, state=TrialState.FAIL)
        raise
    else:
        frozen = study.tell(trial, value)
        log.info("%s trial %d: val F1 %.4f with %s", scenario, trial.number, value, trial.params)
    finally:
        _ACTIVE_TRIALS.discard(trial._trial_id)
    return {"number": trial.number, "state": frozen.state.name, "value": frozen.value, "seconds": time.perf_counter() - t0}


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (scancel, Snakemake shutting down) exits through Python, so the trial is marked FAIL.

    A SIGKILL or a lost node cannot be caught: the next worker finds the stale trial instead.
    """
    import signal
    import sys

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        sys.exit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def input_fingerprint(files: dict[str, str]) -> str | None:
    """Short SHA-256 over the named input files (small ones: manifests, teacher weights)."""
    import hashlib

    if not files:
        return None
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode())
        with open(files[name], "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v) or "empty"


# ---------------------------------------------------------------- summary


def load_study(config: dict, scenario: str, journal_path: str | Path) -> optuna.Study:
    if not Path(journal_path).is_file():
        raise FasflowError(f"{journal_path}: no Optuna journal (run the tune_worker jobs first)")
    return open_study(config, scenario, journal_storage(journal_path))


def trials_table(study: optuna.Study, param_names: tuple[str, ...]) -> pl.DataFrame:
    """One row per trial: number, state, value, duration, epochs, worker and each parameter."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        rows.append({
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "duration_s": duration,
            "epochs": t.user_attrs.get("epochs", len(t.intermediate_values) or None),
            "best_epoch": t.user_attrs.get("best_epoch"),
            "worker": t.user_attrs.get("worker"),
            "sampler_seed": t.user_attrs.get("sampler_seed"),
            **{f"params_{k}": t.params.get(k) for k in param_names},
        })
    schema = {
        "number": pl.Int64, "state": pl.String, "value": pl.Float64, "duration_s": pl.Float64,
        "epochs": pl.Int64, "best_epoch": pl.Int64, "worker": pl.Int64, "sampler_seed": pl.Int64,
        **{f"params_{k}": (pl.String if k == "optimizer" else pl.Float64) for k in param_names},
    }
    return pl.DataFrame(rows, schema=schema, orient="row").sort("number")


def best_params(study: optuna.Study, config: dict, scenario: str) -> dict:
    """best_params.json: {"params": TrainConfig overrides, "value": best val F1, "trial": number, ...}."""
    counts = state_counts(study)
    finished = sum(counts[s.name] for s in FINISHED)
    n_trials = config["tune"]["n_trials"]
    if finished != n_trials:
        raise FasflowError(
            f"study {study.study_name!r}: {finished} finished trials, expected tune.n_trials = {n_trials} "
            f"({_fmt_counts(counts)}); rerun the tune_worker jobs"
        )
    if counts["COMPLETE"] == 0:
        raise FasflowError(f"study {study.study_name!r}: no trial completed (all {finished} were pruned)")
    best = study.best_trial
    names = tuned_param_names(config, scenario)
    finished_trials = study.get_trials(deepcopy=False, states=FINISHED)
    inputs = sorted({t.user_attrs["inputs"] for t in finished_trials if "inputs" in t.user_attrs})
    if len(inputs) > 1:
        get_logger().warning(
            "%s: the study's trials saw %d different versions of its inputs (data or teacher changed "
            "between runs); delete the journal to tune again on the current inputs", study.study_name, len(inputs),
        )
    return {
        "params": {k: best.params[k] for k in names},
        "value": best.value,
        "trial": best.number,
        "best_epoch": best.user_attrs.get("best_epoch"),
        "n_trials": n_trials,
        "n_complete": counts["COMPLETE"],
        "n_pruned": counts["PRUNED"],
        "n_failed": counts["FAIL"],
        "study_name": study.study_name,
        "input_fingerprints": inputs,
        "objective": "validation F1 (spoof positive), best epoch, early-stopping patience tune.patience",
        "settings": study.user_attrs.get(SETTINGS_ATTR),
    }


def plot_history(study: optuna.Study, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization.matplotlib import plot_optimization_history

    from .figures import save_figure

    with _quiet_experimental():
        ax = plot_optimization_history(study)
    ax.set_title(f"Optimisation history: {study.study_name}")
    ax.set_ylabel("validation F1")
    save_figure(ax.figure, [path])


def plot_importance(study: optuna.Study, path: str | Path, seed: int) -> None:
    """fANOVA parameter importances, or a placeholder figure that says why there are none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_param_importances

    from .figures import save_figure

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    values = {t.value for t in complete}
    reason = None
    if len(complete) < 2:
        reason = f"needs at least 2 complete trials, the study has {len(complete)}"
    elif len(values) < 2:
        reason = f"all {len(complete)} complete trials have the same validation F1 ({complete[0].value:.4f})"
    if reason is None:
        try:
            with _quiet_experimental():
                ax = plot_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed))
            ax.set_title(f"Parameter importance (fANOVA): {study.study_name}")
            save_figure(ax.figure, [path])
            return
        except (RuntimeError, ValueError, ZeroDivisionError) as exc:
            reason = f"importance evaluation failed: {exc}"
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.5, f"No parameter importances for {study.study_name}:\n{reason}.", ha="center", va="center", wrap=True)
    save_figure(fig, [path])


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def summarize(config: dict, scenario: str, journal_path, out: dict) -> dict:
    """Write best_params.json, trials.parquet and the two figures named in `out`."""
    study = load_study(config, scenario, journal_path)
    best = best_params(study, config, scenario)
    table = trials_table(study, tuned_param_names(config, scenario))
    finished = table.filter(pl.col("state").is_in([s.name for s in FINISHED]))
    best["wall_time_s"] = float(finished["duration_s"].sum())
    plot_history(study, out["history"])
    plot_importance(study, out["importance"], config["tune"]["seed"])
    write_parquet(out["trials"], table)
    write_json(out["best_params"], best)  # last: the file the final training waits for
    return best
