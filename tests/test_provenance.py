"""fasflow.provenance: container/SLURM detection, versions and git commit, without a container."""

import json
import subprocess
from importlib import metadata

import pytest

from fasflow.provenance import git_commit, package_versions, provenance

ENV_VARS = (
    "APPTAINER_CONTAINER",
    "SINGULARITY_CONTAINER",
    "APPTAINER_NAME",
    "SINGULARITY_NAME",
    "SLURM_JOB_ID",
    "SLURM_JOBID",
)


@pytest.fixture
def clean_env(monkeypatch):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_outside_container(clean_env):
    prov = provenance()
    assert prov["in_container"] is False
    assert prov["container_image"] is None
    assert prov["container_image_name"] is None
    assert prov["slurm_job_id"] is None
    assert prov["packages"]["numpy"] == metadata.version("numpy")
    assert prov["python"].count(".") == 2
    json.dumps(prov)  # goes into summary.json as is


def test_inside_apptainer(clean_env):
    clean_env.setenv("APPTAINER_CONTAINER", "/images/fasflow-0.1.0-cpu.sif")
    clean_env.setenv("APPTAINER_NAME", "fasflow-0.1.0-cpu.sif")
    prov = provenance()
    assert prov["in_container"] is True
    assert prov["container_image"] == "/images/fasflow-0.1.0-cpu.sif"
    assert prov["container_image_name"] == "fasflow-0.1.0-cpu.sif"


def test_singularity_name_falls_back_to_basename(clean_env):
    clean_env.setenv("SINGULARITY_CONTAINER", "/x/y/img.sif")
    prov = provenance()
    assert prov["in_container"] is True
    assert prov["container_image_name"] == "img.sif"


def test_slurm_job_id(clean_env):
    clean_env.setenv("SLURM_JOB_ID", "4242")
    assert provenance()["slurm_job_id"] == "4242"


def test_missing_package_is_none():
    assert package_versions(("numpy", "surely-not-installed-pkg")) == {
        "numpy": metadata.version("numpy"),
        "surely-not-installed-pkg": None,
    }


def _git(repo, *args):
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "f.txt").write_text("x\n")
    _git(tmp_path, "add", "f.txt")
    _git(
        tmp_path,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.org",
        "commit",
        "-q",
        "-m",
        "init",
    )
    return tmp_path


def test_git_commit_from_subdirectory(repo):
    sub = repo / "a" / "b"
    sub.mkdir(parents=True)
    assert git_commit(sub) == _git(repo, "rev-parse", "HEAD")


def test_git_commit_packed_refs_and_detached(repo):
    head = _git(repo, "rev-parse", "HEAD")
    _git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert git_commit(repo) == head
    _git(repo, "checkout", "-q", "--detach")
    assert git_commit(repo) == head


def test_no_repository(tmp_path):
    assert git_commit(tmp_path) is None
