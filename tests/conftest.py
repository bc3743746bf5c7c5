import os
import sys
from pathlib import Path

# Tests import fasflow from this checkout and helpers (celeba_tree) from tests/.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))
# One thread per test process: the machine has two cores and tests must not fight over them.
os.environ.setdefault("OMP_NUM_THREADS", "1")


import copy  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

TINY_CONFIG = ROOT / "tests" / "configs" / "tiny.yaml"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def deep_merge(base: dict, over: dict) -> dict:
    """`over` applied to `base` key by key, as Snakemake merges --configfile files."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def tiny_config(*overrides: dict) -> dict:
    """config.yaml + tests/configs/tiny.yaml (+ `overrides`), validated: every default filled in."""
    from fasflow.config import validate_config

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for over in (yaml.safe_load(TINY_CONFIG.read_text()), {"train": {"device": "cpu"}}, *overrides):
        config = deep_merge(config, over)
    return validate_config(config, SCHEMA)


def tiny_data(n=24, size=24, seed=0):
    """Faces with a learnable spoof cue (stripes) and their labels, 1 live : 2 spoof."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3 != 0
    faces = rng.integers(0, 120, size=(n, size, size, 3), dtype=np.uint8)
    faces[labels, ::2, :, 0] = 250
    return faces, labels.astype(np.int64)


class Workflow:
    """A Snakemake working directory with the tiny configuration; run(targets...) builds them."""

    def __init__(self, workdir: Path, extra_configfiles=()):
        self.workdir = workdir
        self.configfiles = [str(TINY_CONFIG), *map(str, extra_configfiles)]

    def command(self, *args: str) -> list[str]:
        return [
            sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
            "--directory", str(self.workdir), "--cores", "2", *args, "--configfile", *self.configfiles,
        ]

    def run(self, *args: str, check: bool = True, timeout: int = 1200) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(*args), capture_output=True, text=True, cwd=self.workdir, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed:\n{(result.stdout + result.stderr)[-4000:]}")
        return result

    def path(self, relative: str) -> Path:
        return self.workdir / relative


def new_workflow(workdir: Path, extra_configfiles=()) -> Workflow:
    # The Snakefile's `configfile: config/config.yaml` is read relative to the working directory.
    shutil.copytree(ROOT / "config", workdir / "config")
    return Workflow(workdir, extra_configfiles)


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory) -> Workflow:
    """One tiny workflow directory shared by the session's workflow tests (outputs are reused)."""
    return new_workflow(tmp_path_factory.mktemp("tiny_workflow"))


def model_paths(folder: Path) -> tuple[Path, Path]:
    """(weights, summary) of the trained model in `folder` (the files fasflow.models.load_trained reads)."""
    from fasflow.models import MODEL_FILES

    return folder / MODEL_FILES["weights"], folder / MODEL_FILES["summary"]
