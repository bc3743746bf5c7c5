"""The real SLURM profile on a real (one-node, local) SLURM cluster.

Runs the data rules and one tiny training through `--profile profiles/slurm` plus the CI overlay
tests/profiles/slurm-local (no GPU, squeue status, no accounting) and asserts that every job
Snakemake ran was a SLURM job that completed, inside the Apptainer image the profile asks for.
Start the cluster with ../shared/tools/local-slurm-start.sh (.ci/run does).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter

import pytest
import yaml
from infra import ROOT, apptainer_env, build_image, make_workdir, missing, snakemake

TARGET = "results/models/S0/weights.safetensors"
PROFILES = [
    "--profile",
    str(ROOT / "profiles/slurm"),
    "--profile",
    str(ROOT / "tests/profiles/slurm-local"),
]
TIMEOUT = 900
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


def slurm_up() -> None:
    for tool in ("sbatch", "squeue", "scontrol", "sinfo"):
        if shutil.which(tool) is None:
            missing(f"SLURM command {tool!r} not found (start ../shared/tools/local-slurm-start.sh)")
    try:
        r = subprocess.run(
            ["sinfo", "-h", "-o", "%a %t"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        missing("no SLURM controller answered sinfo within 20 s (is slurmctld running?)")
    if r.returncode != 0 or "up" not in r.stdout:
        missing(f"no SLURM cluster answers sinfo: {r.stdout.strip()} {r.stderr.strip()}")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    slurm_up()
    env = apptainer_env()  # the real profile runs every job in the image
    image = build_image(env)
    work = make_workdir(tmp_path_factory.mktemp("slurm"), image)
    r = snakemake(work, *PROFILES, TARGET, env=env, timeout=TIMEOUT)
    assert r.returncode == 0, f"SLURM run failed:\n{r.stderr[-6000:]}"
    return work, r.stdout + r.stderr, image


def job_rules(log: str) -> dict[str, str]:
    """Snakemake job id -> rule name, from the 'rule X:' / 'jobid: N' blocks of the log."""
    rules, current = {}, None
    for line in log.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if m:
            current = m.group(1)
        m = re.match(r"^jobid: (\d+)", line.strip())
        if m and current:
            rules[m.group(1)] = current
            current = None
    return rules


@pytest.mark.slurm
def test_every_rule_ran_as_a_completed_slurm_job(run):
    work, log, image = run
    rules = job_rules(log)
    submitted = dict(SUBMITTED.findall(log))  # snakemake job id -> SLURM job id
    expected = Counter(
        {"synthesize_dataset": 1, "ingest": 1, "split": 1, "face_cache": 2, "train_student": 1}
    )
    assert Counter(rules.values()) == expected, rules
    # the target rules of the workflow are local; every job that ran is a SLURM job
    assert set(submitted) == set(rules), (submitted, rules)
    for job, slurm_id in submitted.items():
        # MinJobAge keeps finished jobs in slurmctld for 300 s: ask it how the job ended
        r = subprocess.run(
            ["scontrol", "show", "job", slurm_id], capture_output=True, text=True, timeout=30
        )
        assert "JobState=COMPLETED" in r.stdout, (rules[job], slurm_id, r.stdout + r.stderr)
        assert "ExitCode=0:0" in r.stdout
        # the plugin's per-job log lies under .snakemake/slurm_logs/rule_<name>/
        logs = list((work / ".snakemake/slurm_logs" / f"rule_{rules[job]}").rglob(f"{slurm_id}.log"))
        assert len(logs) == 1, f"no SLURM log for job {slurm_id} ({rules[job]})"
        # inside the job, the rule ran in the profile's container
        assert f"Activating singularity image {image}" in logs[0].read_text(), logs[0]


@pytest.mark.slurm
def test_training_ran_in_the_image_inside_a_slurm_job(run):
    work, log, image = run
    prov = json.loads((work / "results/models/S0/summary.json").read_text())["provenance"]
    assert prov["in_container"] is True, prov
    assert prov["container_image_name"] is not None
    train_job = [
        slurm for job, slurm in SUBMITTED.findall(log) if job_rules(log)[job] == "train_student"
    ]
    assert prov["slurm_job_id"] == train_job[0], (prov, train_job)


def test_profile_requests_gpus_for_training():
    """The real profile (without the CI overlay) asks SLURM for a GPU per training job."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert {"--nv", "--cleanenv"} <= set(profile["apptainer-args"].split())
    assert profile["latency-wait"] == 60 and profile["rerun-incomplete"] is True
    for rule in ("train_teacher", "train_student", "tune_worker", "predict"):
        res = profile["set-resources"][rule]
        assert res["gpu"] == 1 and res["cpus_per_gpu"] >= 1, rule
        assert res["mem_mb"] >= 8000 and res["runtime"] >= 30, rule


def training_rules() -> set[str]:
    """Every rule of the workflow that trains a model, `use rule ... as` variants included."""
    names = set()
    for smk in (ROOT / "workflow/rules").glob("*.smk"):
        names |= set(re.findall(r"^(?:rule|use rule \w+ as) (\w+)", smk.read_text(), flags=re.M))
    return {n for n in names if re.search(r"train_(student|teacher)$|tune_worker$", n)}


@pytest.mark.parametrize("path", ["profiles/slurm/config.yaml", "profiles/demo/config.yaml"])
def test_profiles_size_every_training_rule(path):
    """A training rule missing from a profile falls back to the rule's own threads (and, on SLURM, to no GPU)."""
    profile = yaml.safe_load((ROOT / path).read_text())
    rules = training_rules()
    assert {"train_student", "leakage_seed_train_student", "replicate_tune_worker"} <= rules
    assert rules - set(profile["set-threads"]) == set()
    if "set-resources" in profile:
        assert rules - set(profile["set-resources"]) == set()


@pytest.mark.parametrize("path", ["profiles/slurm/config.yaml", "profiles/default/config.yaml"])
def test_every_profile_entry_is_commented(path):
    lines = (ROOT / path).read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):  # a top-level key
            assert lines[i - 1].lstrip().startswith("#"), f"{path}:{i + 1} {line!r} has no comment"


def test_default_profile_agrees_with_slurm_profile():
    """profiles/default is loaded after --profile and wins on shared keys: they must agree."""
    default = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    slurm = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    for key in default.keys() & slurm.keys():
        assert default[key] == slurm[key], key
