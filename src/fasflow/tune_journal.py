"""Several workers on one Optuna journal: claiming trials, stale trials, heartbeats, SIGTERM.

Any number of workers (Snakemake jobs, possibly SLURM jobs on several nodes) share a study's
journal file (fasflow.tune.open_study):

- A worker claims a trial under a lock (`claim_trial`): it first fails trials left RUNNING by
  processes that are gone, then counts the finished (COMPLETE or PRUNED) and running trials and
  asks for a new trial only while finished + running < n_trials. Count and ask happen under one
  lock, so W workers together create exactly n_trials trials that finish (a failed trial does
  not count and is replaced on the next run).
- A trial is stale when its process is provably gone (same host, pid not alive or reused) or,
  for trials of another host, when its heartbeat (a user attribute refreshed by a thread every
  `tune.heartbeat_interval` seconds) is older than `tune.grace_period`. Journal storage has no
  built-in heartbeat (Optuna's heartbeat_interval/grace_period are RDBStorage-only).
- SIGTERM (scancel, Snakemake shutting down) exits through Python, so the running trial is
  marked FAIL; a SIGKILL or a lost node leaves it RUNNING for the next worker to fail as stale.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import optuna
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileOpenLock
from optuna.trial import TrialState

from .runlog import get_logger
from .tune import FINISHED, format_counts, journal_storage, make_sampler, open_study, state_counts

# Trials this process is running right now, as (study name, trial number): a RUNNING trial that
# names this pid but is not listed here was left behind by an earlier, interrupted run inside
# the same process (tests run workers in-process).
_ACTIVE_TRIALS: set[tuple[str, int]] = set()
STALE_REASON = "stale: its process is gone"

Objective = Callable[[optuna.trial.Trial], float]


def trial_id(storage: BaseStorage, study: optuna.Study, number: int) -> int:
    """The storage id of trial `number` of `study`, through the storage's public API."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


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
            if (study.study_name, trial.number) not in _ACTIVE_TRIALS:
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


def fail_stale_trials(study: optuna.Study, storage: BaseStorage, grace_period: float) -> list[int]:
    """Mark stale RUNNING trials FAIL with the reason (they then never count); returns their numbers."""
    failed = []
    for trial in stale_trials(study, grace_period):
        tid = trial_id(storage, study, trial.number)
        try:
            # The reason first: a finished trial's attributes can no longer be written.
            storage.set_trial_system_attr(tid, "fail_reason", STALE_REASON)
            storage.set_trial_state_values(tid, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        failed.append(trial.number)
    if failed:
        get_logger().warning("%s: marked stale trials %s as FAIL (%s)", study.study_name, failed, STALE_REASON)
    return failed


@contextlib.contextmanager
def _heartbeat(storage: BaseStorage, study: optuna.Study, number: int, interval: float) -> Iterator[None]:
    """Refresh the trial's heartbeat attribute from a thread while the objective runs."""
    tid = trial_id(storage, study, number)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.set_trial_user_attr(tid, "heartbeat", time.time())
            except (optuna.exceptions.UpdateFinishedTrialError, KeyError, RuntimeError):
                return

    thread = threading.Thread(target=beat, name=f"optuna-heartbeat-{number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# ---------------------------------------------------------------- worker


def claim_trial(study: optuna.Study, storage: BaseStorage, tune: dict, worker: int, lock: JournalFileOpenLock):
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
    settings: dict,
    scenario: str,
    worker: int,
    journal_path: str | Path,
    objective: Objective,
    input_files: dict[str, str] | None = None,
) -> dict:
    """Run `objective` on trials of the scenario's study until it has n_trials finished or claimed.

    `input_files` (name -> path: manifests, teacher weights) are fingerprinted into every trial,
    so a study whose inputs changed between runs is flagged in best_params.json.
    """
    log = get_logger()
    tune = settings["tune"]
    storage = journal_storage(journal_path)
    study = open_study(settings, scenario, journal_path, storage)
    fingerprint = input_fingerprint(input_files or {})
    lock = JournalFileOpenLock(str(journal_path) + ".claim")
    ran: list[dict] = []
    started = time.perf_counter()
    with _sigterm_as_exit():
        while True:
            trial = _run_one_trial(study, storage, tune, worker, lock, objective, fingerprint)
            if trial is None:
                break
            ran.append(trial)
    counts = state_counts(study)
    log.info("%s worker %d: done after %d trial(s); study: %s", scenario, worker, len(ran), format_counts(counts))
    return {
        "scenario": scenario,
        "study_name": study.study_name,
        "worker": worker,
        "trials": ran,
        "seconds": time.perf_counter() - started,
        "study_counts": counts,
    }


def _run_one_trial(study: optuna.Study, storage: BaseStorage, tune: dict, worker: int, lock, objective: Objective, fingerprint) -> dict | None:
    """Claim, run and record one trial; None when the study needs no more."""
    log = get_logger()
    trial, counts = claim_trial(study, storage, tune, worker, lock)
    if trial is None:
        return None
    if fingerprint:
        trial.set_user_attr("inputs", fingerprint)
    log.info("%s worker %d: trial %d (study so far: %s)", study.study_name, worker, trial.number, format_counts(counts))
    key = (study.study_name, trial.number)
    _ACTIVE_TRIALS.add(key)
    t0 = time.perf_counter()
    try:
        with _heartbeat(storage, study, trial.number, tune["heartbeat_interval"]):
            value = objective(trial)
    except optuna.TrialPruned as exc:
        frozen = study.tell(trial, state=TrialState.PRUNED)
        log.info("%s trial %d: %s", study.study_name, trial.number, exc)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            study.tell(trial, state=TrialState.FAIL)
        raise
    else:
        frozen = study.tell(trial, value)
        log.info("%s trial %d: val F1 %.4f with %s", study.study_name, trial.number, value, trial.params)
    finally:
        _ACTIVE_TRIALS.discard(key)
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
    """Short SHA-256 over the named input files (manifests, teacher and ImageNet weights)."""
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
