"""The workflow in a real Apptainer container: same results as without it, provenance recorded.

Builds (or reuses, keyed by definition + lock hash) the CPU image, runs the data rules and one
tiny training (S0) with `snakemake --use-apptainer --cores 2`, and the same target without
containers, then compares outputs byte for byte / tensor for tensor.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from infra import ROOT, apptainer_env, build_image, make_workdir, snakemake
from safetensors.numpy import load_file

pytestmark = pytest.mark.container

TARGET = "results/models/S0/weights.safetensors"
SPLITS = ("train", "val", "test")
TIMEOUT = 900


@pytest.fixture(scope="module")
def env():
    return apptainer_env()


@pytest.fixture(scope="module")
def image(env):
    return build_image(env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, env, image):
    """The same tiny target in a container and on the host (same config, same seeds)."""
    base = tmp_path_factory.mktemp("container")
    inside = make_workdir(base / "apptainer", image)
    r = snakemake(inside, "--cores", "2", "--use-apptainer", TARGET, env=env, timeout=TIMEOUT)
    assert r.returncode == 0, f"containerised run failed:\n{r.stderr[-6000:]}"
    outside = make_workdir(base / "host", image)
    r = snakemake(outside, "--cores", "2", TARGET, env=env, timeout=TIMEOUT)
    assert r.returncode == 0, f"host run failed:\n{r.stderr[-6000:]}"
    return inside, outside


def test_image_self_test(env, image):
    """%test imports every package and reports the torch/CUDA build."""
    r = subprocess.run(
        ["apptainer", "test", str(image)], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "torch 2.14.1" in r.stdout and "CUDA build" in r.stdout, r.stdout


def test_rules_ran_inside_the_image(runs, image):
    inside, _ = runs
    out = (inside / "snakemake.out").read_text()
    # Snakemake announces the image for every job it runs in a container: that must be all of them
    jobs = re.findall(r"^(?:local)?rule (\w+):$", out, flags=re.M)
    activated = out.count(f"Activating singularity image {image}")
    assert len(jobs) == 6 and activated == len(jobs), (jobs, activated)
    prov = json.loads((inside / "results/models/S0/summary.json").read_text())["provenance"]
    assert prov["in_container"] is True, prov
    recorded = Path(prov["container_image"])
    assert recorded.resolve() == image.resolve(), (recorded, image)
    assert prov["packages"]["torch"] == "2.14.1"
    assert prov["python"].startswith("3.11.")


def test_host_run_says_no_container(runs):
    _, outside = runs
    prov = json.loads((outside / "results/models/S0/summary.json").read_text())["provenance"]
    assert prov["in_container"] is False
    assert prov["container_image"] is None


def test_same_outputs_with_and_without_container(runs):
    inside, outside = runs
    for split in SPLITS:
        a = pl.read_parquet(inside / f"results/splits/{split}.parquet")
        b = pl.read_parquet(outside / f"results/splits/{split}.parquet")
        assert a.height > 0
        # the manifests name images by dataset-relative path, so the two runs must agree exactly
        assert a.equals(b), f"{split} manifest differs"
    for split in ("train", "val"):
        a = np.load(inside / f"results/faces/{split}.npy", allow_pickle=False)
        b = np.load(outside / f"results/faces/{split}.npy", allow_pickle=False)
        assert a.shape == b.shape and np.array_equal(a, b), f"{split} face cache differs"
    wa = load_file(inside / TARGET)
    wb = load_file(outside / TARGET)
    assert wa.keys() == wb.keys() and len(wa) > 10
    for name in wa:
        assert np.array_equal(wa[name], wb[name]), f"S0 weight {name} differs"
    ha = pl.read_csv(inside / "results/models/S0/history.csv")
    hb = pl.read_csv(outside / "results/models/S0/history.csv")
    # timing columns differ between runs; the learning curve must not
    timing = [c for c in ha.columns if c in ("seconds", "images_per_s") or "time" in c]
    assert ha.drop(timing).equals(hb.drop(timing))


def test_image_name_carries_the_version(image):
    label = re.search(r"org\.opencontainers\.image\.version\s+(\S+)", (ROOT / "containers/fasflow-cpu.def").read_text())
    assert image.name == f"fasflow-{label.group(1)}-cpu.sif"
    assert image.is_symlink(), "containers/<name>.sif should point into the hash-keyed cache"
    assert ROOT / "containers" == image.parent


def test_image_build_refuses_a_disk_without_room(env, tmp_path):
    """A build that cannot fit stops before it starts, naming the folder, and leaves no file behind."""
    cache = tmp_path / "cache"
    r = subprocess.run(
        ["bash", str(ROOT / "scripts/build-image.sh"), "cpu"],
        capture_output=True,
        text=True,
        env={**env, "FASFLOW_IMAGE_CACHE": str(cache), "FASFLOW_IMAGE_MIN_FREE_GB": str(10**9)},
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    assert re.search(r"needs 1000000000 GB free in \S+, found \d+ GB", r.stderr), r.stderr
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == []


def test_ci_checks_the_disk_before_installing_anything(tmp_path):
    """.ci/run stops at once on a full disk, instead of in pip half way through the venv."""
    r = subprocess.run(
        ["bash", str(ROOT / ".ci/run")],
        capture_output=True,
        text=True,
        # a tools folder that does not exist: were the check to pass, the run would stop right after it
        env={**os.environ, "FASFLOW_CI_MIN_FREE_GB": str(10**9), "FASFLOW_CI_TOOLS": str(tmp_path / "none")},
        timeout=60,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"disk: \d+ GB free in \S+, 1000000000 GB needed", r.stderr), r.stderr
    assert "needs 1000000000 GB free" in r.stderr and "FASFLOW_CI_MIN_FREE_GB" in r.stderr
    assert "installing apptainer" not in r.stdout
