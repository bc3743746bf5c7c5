"""Helpers for the tests that need real infrastructure (Apptainer, SLURM).

Where a tool is missing these tests skip with the reason on a developer's machine, but FAIL
in CI (CI=true): CI must prove both paths, so a missing tool there is an error, not a pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The install location of ../shared/tools/install-apptainer.sh (what .ci/run uses).
APPTAINER_ENV_SH = Path(os.environ.get("APPTAINER_ENV_SH", "/opt/apptainer/env.sh"))
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
IMAGE_VERSION = "0.2.0"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Fail in CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this test must run in CI)", pytrace=False)
    pytest.skip(reason)


def apptainer_env() -> dict[str, str]:
    """os.environ with `apptainer` on PATH (sourcing the install's env.sh when needed)."""
    env = dict(os.environ)
    if shutil.which("apptainer", path=env.get("PATH")) is None and APPTAINER_ENV_SH.is_file():
        # env.sh sets PATH and, on VMs with a reduced capability set, APPTAINER_DROP_CAPS.
        out = subprocess.run(
            ["bash", "-c", f'source "{APPTAINER_ENV_SH}" && env -0'],
            capture_output=True,
            check=True,
        ).stdout
        env = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    if shutil.which("apptainer", path=env.get("PATH")) is None:
        missing(
            "apptainer is not installed (run ../shared/tools/install-apptainer.sh, "
            f"or set APPTAINER_ENV_SH; looked on PATH and in {APPTAINER_ENV_SH})"
        )
    return env


def build_image(env: dict[str, str], timeout: int = 3600) -> Path:
    """The CPU image, built by scripts/build-image.sh or reused from its hash-keyed cache."""
    r = subprocess.run(
        ["bash", str(ROOT / "scripts/build-image.sh"), "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert r.returncode == 0, f"image build failed:\n{r.stderr[-4000:]}"
    image = Path(r.stdout.strip().splitlines()[-1])
    assert image == ROOT / f"containers/fasflow-{IMAGE_VERSION}-cpu.sif", image
    assert image.resolve().stat().st_size > 100 * 2**20, f"{image} is suspiciously small"
    return image


def make_workdir(path: Path, image: Path | None) -> Path:
    """A Snakemake working directory for the tiny configuration (dataset generated inside it)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "config", path / "config", dirs_exist_ok=True)
    lines = ["dataset:", f"  root: {path / 'celeba'}"]
    if image is not None:
        lines += ["container:", f"  image: {image}"]
    (path / "overrides.yaml").write_text("\n".join(lines) + "\n")
    return path


def snakemake(
    workdir: Path, *args: str, env: dict[str, str], timeout: int
) -> subprocess.CompletedProcess:
    """Run Snakemake on the tiny configuration under `timeout -k` (the SLURM plugin can hang)."""
    cmd = [
        "timeout",
        "-k",
        "10",
        str(timeout),
        *SNAKEMAKE,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(ROOT / "tests/configs/tiny.yaml"),
        str(workdir / "overrides.yaml"),
        *args,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env)
    (workdir / "snakemake.out").write_text(r.stdout + "\n--- stderr ---\n" + r.stderr)
    if r.returncode == 124:
        pytest.fail(f"snakemake timed out after {timeout} s: {' '.join(cmd)}\n{r.stderr[-4000:]}")
    return r
