"""One place that makes a run repeatable."""

from __future__ import annotations

import os
import random
import sys

import numpy as np


def seed_everything(seed: int, deterministic: bool = True):
    """Seed Python, NumPy and torch; return a generator for DataLoader shuffling.

    DataLoader workers are seeded by `seed_worker` (pass it as worker_init_fn).
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # Needed by cuBLAS for deterministic GEMMs; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: derive NumPy/random seeds from torch's per-worker seed."""
    import torch

    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def set_threads(threads: int | None) -> None:
    """Use exactly the cores Snakemake gave this job (oversubscription costs 4-50x here).

    Through the environment, which torch, NumPy's BLAS and ONNX Runtime read when they start,
    and through torch directly when it is already imported; steps that need no torch (tables,
    figures, metrics) do not pay for importing it.
    """
    # Idle OpenMP threads sleep instead of spinning: two jobs sharing the cores otherwise steal
    # each other's time (2-thread training ran several times slower beside another job).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads and threads > 0:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(int(threads))
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(threads))
