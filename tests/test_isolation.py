"""Test split isolation on the workflow's real job DAG.

The DAG of the whole demo study (every table, figure, model, study and ONNX file) is built
with a forced dry run; each job's rule, inputs and outputs are parsed from Snakemake's job
listing. Two checks:
- only allow-listed rules (test-side data preparation, prediction/evaluation, export) have the
  test split among their direct inputs;
- no training or tuning job depends on the test split, directly or through any chain of
  upstream jobs (so an allow-listed rule cannot smuggle test data into training either).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_FILES = {"results/splits/test.parquet", "results/faces/test.npy", "results/faces/test.parquet"}
# Rules allowed to read the test split directly. face_cache builds results/faces/test.npy from
# the test manifest (preparation only); the rest are prediction/evaluation and export.
ALLOWED_PREFIXES = ("face_cache", "predict", "metrics", "table", "figure", "evaluate", "export", "quantize", "latency", "report")
# Rules that must never see test data, not even transitively.
GUARDED_PREFIXES = ("train", "tune")
# Rules the demo DAG must contain, so a changed dry-run format cannot make the test pass vacuously.
EXPECTED_RULES = {"split", "face_cache", "train_teacher", "train_student", "tune_worker", "tune_study", "predict"}
JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+):$")


@dataclass
class Job:
    rule: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def parse_dry_run(text: str) -> list[Job]:
    """Jobs (rule, input and output files) from the listing of `snakemake -n`."""
    jobs: list[Job] = []
    for line in text.splitlines():
        header = JOB_HEADER.match(line)
        if header:
            jobs.append(Job(header.group(1)))
        elif jobs and line.startswith("    input: "):
            jobs[-1].inputs = [p.strip() for p in line.removeprefix("    input: ").split(",") if p.strip()]
        elif jobs and line.startswith("    output: "):
            jobs[-1].outputs = [p.strip() for p in line.removeprefix("    output: ").split(",") if p.strip()]
    return jobs


def find_test_split_leaks(jobs: list[Job]) -> list[str]:
    """Every way the test split reaches a rule that must not see it (empty list: isolated)."""
    producer = {out: job for job in jobs for out in job.outputs}
    problems = []
    for job in jobs:
        direct = sorted(TEST_FILES.intersection(job.inputs))
        # Target rules (no outputs, e.g. `all`) only name files; they run nothing.
        if direct and job.outputs and not job.rule.startswith(ALLOWED_PREFIXES):
            problems.append(f"{job.rule} reads {', '.join(direct)} (not an evaluation rule)")
        if job.rule.startswith(GUARDED_PREFIXES):
            path = upstream_test_path(job, producer)
            if path:
                problems.append(f"{job.rule} depends on the test split: {' <- '.join(path)}")
    return problems


def upstream_test_path(job: Job, producer: dict[str, Job]) -> list[str] | None:
    """A chain of files from `job` back to a test file, or None."""
    stack = [(f, [job.rule, f]) for f in job.inputs]
    seen = set()
    while stack:
        path, chain = stack.pop()
        if path in TEST_FILES:
            return chain
        if path in seen or path not in producer:
            continue
        seen.add(path)
        upstream = producer[path]
        stack.extend((f, chain + [upstream.rule, f]) for f in upstream.inputs)
    return None


# ---------------------------------------------------------------- the checker itself


def test_checker_flags_a_training_rule_reading_test():
    jobs = [
        Job("split", ["results/metadata/images.parquet"], ["results/splits/train.parquet", "results/splits/test.parquet"]),
        Job("train_student", ["results/faces/train.npy", "results/splits/test.parquet"], ["results/models/S0/weights.safetensors"]),
    ]
    assert find_test_split_leaks(jobs) == [
        "train_student reads results/splits/test.parquet (not an evaluation rule)",
        "train_student depends on the test split: train_student <- results/splits/test.parquet",
    ]


def test_checker_flags_a_leak_through_an_allowed_rule():
    # Tuning on test predictions: predict may read test, but tune_worker may not depend on it.
    jobs = [
        Job("predict", ["results/faces/test.npy"], ["results/predictions/S0.parquet"]),
        Job("tune_worker", ["results/faces/train.npy", "results/predictions/S0.parquet"], ["results/optuna/S1/workers/0.json"]),
        Job("tune_study", ["results/optuna/S1/workers/0.json"], ["results/optuna/S1/best_params.json"]),
    ]
    problems = find_test_split_leaks(jobs)
    assert len(problems) == 2 and all("depends on the test split" in p for p in problems)
    assert "tune_study depends on the test split: tune_study <- results/optuna/S1/workers/0.json <- tune_worker" in problems[1]


def test_checker_passes_a_clean_dag_and_flags_unknown_readers():
    clean = [
        Job("face_cache", ["results/splits/test.parquet"], ["results/faces/test.npy"]),
        Job("train_student", ["results/faces/train.npy"], ["results/models/S0/weights.safetensors"]),
        Job("predict", ["results/models/S0/weights.safetensors", "results/faces/test.npy"], ["results/predictions/S0.parquet"]),
    ]
    assert find_test_split_leaks(clean) == []
    assert find_test_split_leaks(clean + [Job("all", ["results/faces/test.npy"], [])]) == []
    assert find_test_split_leaks(clean + [Job("augment_stats", ["results/faces/test.npy"], ["x"])]) == [
        "augment_stats reads results/faces/test.npy (not an evaluation rule)"
    ]


# ---------------------------------------------------------------- the real workflow


def dry_run_jobs(workdir: Path, snakefile: Path, *targets: str) -> list[Job]:
    cmd = [
        sys.executable, "-m", "snakemake", *targets, "-n", "--forceall", "--cores", "2", "--nolock",
        "--snakefile", str(snakefile), "--directory", str(workdir), "--configfile", str(ROOT / "config/demo.yaml"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return parse_dry_run(r.stdout + r.stderr)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("isolation")
    shutil.copytree(ROOT / "config", work / "config")
    return work


WHOLE_STUDY = ("all", "tables", "figures", "tune", "onnx", "table4", *(f"results/models/{s}/summary.json" for s in ("S0", "S1", "S2", "S3")))


@pytest.mark.workflow
def test_no_training_or_tuning_job_depends_on_the_test_split(workdir):
    jobs = dry_run_jobs(workdir, ROOT / "Snakefile", *WHOLE_STUDY)
    rules = {job.rule for job in jobs}
    assert EXPECTED_RULES <= rules, f"dry-run listing not understood; rules found: {sorted(rules)}"
    assert all(job.outputs for job in jobs if job.rule in EXPECTED_RULES)
    # The test split is really in the DAG (read by evaluation), so the check below is not vacuous.
    assert any(TEST_FILES.intersection(job.inputs) for job in jobs if job.rule == "predict")
    assert find_test_split_leaks(jobs) == []


@pytest.mark.workflow
def test_a_leaking_rule_added_to_the_workflow_is_caught(workdir):
    leaky = workdir / "Leaky.smk"
    leaky.write_text(
        f'include: "{ROOT / "Snakefile"}"\n\n\n'
        "rule tune_normaliser:\n"
        '    """Deliberately wrong: statistics of the test faces for tuning."""\n'
        "    input:\n"
        '        faces="results/faces/test.npy",\n'
        "    output:\n"
        '        "results/optuna/normaliser.json",\n'
        "    shell:\n"
        '        "touch {output}"\n'
    )
    jobs = dry_run_jobs(workdir, leaky, "results/optuna/normaliser.json")
    problems = find_test_split_leaks(jobs)
    assert any(p.startswith("tune_normaliser reads results/faces/test.npy") for p in problems), problems
