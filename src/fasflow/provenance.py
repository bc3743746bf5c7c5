"""Where and with what a result was produced: container, host, package versions, commit, SLURM job.

`provenance()` is cheap and never fails: every field falls back to None when unknown, so it can be
written into every model's summary.json, inside or outside a container, on a laptop or a cluster.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# Distributions whose versions decide a result (distribution names, as pip knows them).
PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "optuna",
    "onnx",
    "onnxruntime",
    "polars",
    "numpy",
    "safetensors",
    "scikit-learn",
    "snakemake",
)

# Apptainer sets APPTAINER_*; Singularity (and Apptainer for compatibility) SINGULARITY_*.
_CONTAINER_VARS = ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")
_NAME_VARS = ("APPTAINER_NAME", "SINGULARITY_NAME")


def provenance() -> dict[str, Any]:
    """A JSON-serialisable record of the run environment (see module docstring)."""
    image = _first_env(_CONTAINER_VARS)
    name = _first_env(_NAME_VARS) or (os.path.basename(image) if image else None)
    return {
        "in_container": image is not None,
        "container_image": image,
        "container_image_name": name,
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "torch_cuda": _torch_cuda(),
        "git_commit": git_commit(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOBID"),
        "slurm_cluster": os.environ.get("SLURM_CLUSTER_NAME"),
    }


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, None where it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(start: str | os.PathLike | None = None) -> str | None:
    """The checked-out commit of the repository containing `start`.

    By default the checkout this fasflow package was imported from (the code that ran), else the
    cwd. Read from .git directly because a container image need not have a git binary.
    """
    if start is not None:
        git_dir = _find_git_dir(Path(start))
    else:
        git_dir = _find_git_dir(Path(__file__).parent) or _find_git_dir(Path.cwd())
    if git_dir is None:
        return None
    try:
        head = (git_dir / "HEAD").read_text().strip()
    except OSError:
        return None
    if not head.startswith("ref:"):
        return head or None  # detached HEAD holds the commit itself
    ref = head.split(None, 1)[1]
    ref_file = git_dir / ref
    try:
        return ref_file.read_text().strip() or None
    except OSError:
        pass
    try:  # refs packed by `git gc`
        for line in (git_dir / "packed-refs").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    except OSError:
        pass
    return _git_cli_commit(git_dir)


def _find_git_dir(start: Path) -> Path | None:
    for directory in (start.resolve(), *start.resolve().parents):
        candidate = directory / ".git"
        if candidate.is_dir():
            return candidate
        if candidate.is_file():  # worktree or submodule: "gitdir: <path>"
            text = candidate.read_text().strip()
            if text.startswith("gitdir:"):
                target = Path(text.split(":", 1)[1].strip())
                return target if target.is_absolute() else (directory / target).resolve()
    return None


def _git_cli_commit(git_dir: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _torch_cuda() -> dict[str, Any] | None:
    # Only when the caller already imported torch: provenance() must stay cheap.
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    available = bool(torch.cuda.is_available())
    return {
        "build": torch.version.cuda,
        "available": available,
        "device": torch.cuda.get_device_name(0) if available else None,
    }


def _first_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None
