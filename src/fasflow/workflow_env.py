"""Environment for rule jobs, set once when the Snakefile is parsed.

Rules run `fasflow` from this checkout, on the host or in the container; the variables below
make it importable there and carry the facts provenance needs through `apptainer --cleanenv`.
"""

from __future__ import annotations

import os

PROVENANCE_VARIABLES = ("SLURM_JOB_ID", "SLURM_CLUSTER_NAME")


def configure_job_environment(basedir: str) -> None:
    src = os.path.join(basedir, "src")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    os.environ["APPTAINERENV_PYTHONPATH"] = src
    # Snakemake binds only the working directory into the container: when the checkout is not
    # inside it (--directory elsewhere), bind the checkout too, so src/ and .git are visible inside.
    cwd = os.path.abspath(os.getcwd())
    binds = [b for b in os.environ.get("APPTAINER_BIND", "").split(",") if b]
    if os.path.commonpath([cwd, basedir]) != cwd and basedir not in binds:
        os.environ["APPTAINER_BIND"] = ",".join([*binds, basedir])
    # Inside a SLURM job this file is parsed again by the job's own Snakemake: pass the job's
    # identity through `apptainer --cleanenv` so fasflow.provenance can record it.
    for name in PROVENANCE_VARIABLES:
        if os.environ.get(name):
            os.environ[f"APPTAINERENV_{name}"] = os.environ[name]
