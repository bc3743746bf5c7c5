"""Optuna studies of the tuned scenarios (S1, S3): search space, objective, summary.

One study per scenario lives in an Optuna journal file, results/optuna/{scenario}/journal.log,
created or reopened by `open_study` (which refuses a journal made with other settings). The
objective is the best validation F1 of one `train_model` run with early-stopping patience
`tune.patience` and no checkpoints; each epoch's validation F1 is reported for pruning.
How several workers share the journal (claiming trials, stale trials, heartbeats, SIGTERM)
is fasflow.tune_journal's business.

`settings` below is what one study depends on (`fasflow.config.run_settings` plus `tune`):
{"arch", "train", "hyperparameters" (the scenario's section), "tune"}.
The test split is never an argument here.
"""

from __future__ import annotations

import contextlib
import math
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


def study_name(scenario: str) -> str:
    """Fixed per scenario, so every worker and every rerun joins the same study."""
    return f"fasflow-{scenario}"


def tuned_param_names(settings: dict) -> tuple[str, ...]:
    return BASE_PARAMS + (DISTILL_PARAMS if settings["hyperparameters"]["distill"] else ())


def suggest_params(trial: optuna.trial.BaseTrial, search_space: dict, names: tuple[str, ...]) -> dict:
    """Sample the hyperparameters `names` from `tune.search_space`."""
    params = {}
    for name in names:
        space = search_space[name]
        if name == "optimizer":
            params[name] = trial.suggest_categorical(name, list(space))
        else:
            params[name] = trial.suggest_float(name, float(space["low"]), float(space["high"]), log=bool(space["log"]))
    return params


def trial_config(settings: dict, scenario: str, params: dict, pretrained: str | None = None) -> TrainConfig:
    """The scenario's TrainConfig with the trial's parameters, tuning patience and epoch cap."""
    from .train import train_config

    tune = settings["tune"]
    cfg = train_config(
        scenario, settings["arch"], settings["train"], settings["hyperparameters"], pretrained,
        overrides={**params, "patience": tune["patience"]},
    )
    cfg.max_epochs = trial_max_epochs(settings)
    return cfg


def trial_max_epochs(settings: dict) -> int:
    """train.max_epochs, capped by tune.max_epochs when that is set (null = no cap)."""
    cap, epochs = settings["tune"]["max_epochs"], int(settings["train"]["max_epochs"])
    return epochs if cap is None else min(epochs, int(cap))


def objective(
    trial: optuna.trial.BaseTrial,
    settings: dict,
    scenario: str,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    teacher=None,
    pretrained: str | None = None,
    train_fn: Callable[..., dict] | None = None,
) -> float:
    """Best validation F1 of one training run; prunes on per-epoch validation F1."""
    if train_fn is None:
        from .train import train_model as train_fn
    params = suggest_params(trial, settings["tune"]["search_space"], tuned_param_names(settings))
    cfg = trial_config(settings, scenario, params, pretrained)
    epochs = []

    def report(epoch: int, row: dict) -> None:
        epochs.append(epoch)
        trial.report(row["val_f1"], epoch)
        if trial.should_prune():
            trial.set_user_attr("epochs", epoch)
            raise optuna.TrialPruned(f"pruned after epoch {epoch} (val F1 {row['val_f1']:.4f})")

    summary = train_fn(cfg, *train, *val, outputs=None, teacher=teacher, on_epoch=report, checkpoint=False)
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


def study_settings(settings: dict, scenario: str) -> dict:
    """What defines a study's trials; a journal made with other settings is not continued."""
    tune, train = settings["tune"], settings["train"]
    names = tuned_param_names(settings)
    fixed = {k: v for k, v in settings["hyperparameters"].items() if k not in names and k not in ("tune", "patience")}
    return {
        "scenario": scenario,
        "arch": settings["arch"],
        "fixed": fixed,
        "search_space": {k: tune["search_space"][k] for k in names},
        "patience": tune["patience"],
        "max_epochs": trial_max_epochs(settings),
        "sampler": tune["sampler"],
        "pruner": tune["pruner"],
        "seed": tune["seed"],
        "train": {k: train[k] for k in ("input_size", "crop_scale", "batch_size", "warmup_epochs", "grad_clip_norm", "seed", "class_weighted")},
    }


def open_study(settings: dict, scenario: str, journal_path: str | Path, storage: JournalStorage | None = None) -> optuna.Study:
    """Create or load the scenario's study in its journal; refuse a journal made with different settings.

    `storage` is the journal's storage when the caller already opened it (workers keep it).
    """
    tune = settings["tune"]
    study = optuna.create_study(
        study_name=study_name(scenario),
        storage=storage or journal_storage(journal_path),
        direction="maximize",
        sampler=make_sampler(tune, tune["seed"]),
        pruner=make_pruner(tune),
        load_if_exists=True,
    )
    wanted = _jsonable(study_settings(settings, scenario))
    recorded = study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:
        study.set_user_attr(SETTINGS_ATTR, wanted)
    elif recorded != wanted:
        changed = sorted(k for k in wanted.keys() | recorded.keys() if wanted.get(k) != recorded.get(k))
        raise ConfigError(
            f"the Optuna study {study_name(scenario)!r} in {journal_path} was made with other "
            f"settings ({', '.join(changed)} differ from the config). Restore the config, or delete that "
            f"journal to start a new study."
        )
    return study


def _jsonable(obj):
    """Settings as they come back from the journal (JSON: tuples become lists)."""
    import json

    return json.loads(json.dumps(obj))


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts = {s.name: 0 for s in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] += 1
    return counts


def format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v) or "empty"


# ---------------------------------------------------------------- summary


def load_study(settings: dict, scenario: str, journal_path: str | Path) -> optuna.Study:
    if not Path(journal_path).is_file():
        raise FasflowError(f"{journal_path}: no Optuna journal (run the tune_worker jobs first)")
    return open_study(settings, scenario, journal_path)


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


def best_params(study: optuna.Study, settings: dict, scenario: str) -> dict:
    """best_params.json: {"params": TrainConfig overrides, "value": best val F1, "trial": number, ...}."""
    counts = state_counts(study)
    finished = sum(counts[s.name] for s in FINISHED)
    n_trials = settings["tune"]["n_trials"]
    if finished != n_trials:
        raise FasflowError(
            f"study {study.study_name!r}: {finished} finished trials, expected tune.n_trials = {n_trials} "
            f"({format_counts(counts)}); rerun the tune_worker jobs"
        )
    if counts["COMPLETE"] == 0:
        raise FasflowError(f"study {study.study_name!r}: no trial completed (all {finished} were pruned)")
    best = study.best_trial
    names = tuned_param_names(settings)
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


def summarize(settings: dict, scenario: str, journal_path, out: dict) -> dict:
    """Write best_params.json, trials.parquet and the two figures named in `out`."""
    study = load_study(settings, scenario, journal_path)
    best = best_params(study, settings, scenario)
    table = trials_table(study, tuned_param_names(settings))
    finished = table.filter(pl.col("state").is_in([s.name for s in FINISHED]))
    best["wall_time_s"] = float(finished["duration_s"].sum())
    plot_history(study, out["history"])
    plot_importance(study, out["importance"], settings["tune"]["seed"])
    write_parquet(out["trials"], table)
    write_json(out["best_params"], best)  # last: the file the final training waits for
    return best
