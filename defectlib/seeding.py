"""One seeding function for Python, NumPy, torch and data-loader workers.

Every experiment calls :func:`seed_everything` once with its config's ``seed``; data loaders
get :func:`worker_init_fn` and :func:`torch_generator` so shuffling and worker-side
randomness follow the same seed. With the same seed the CPU results are identical, except
for the proposed network at more than one thread: PyTorch's backward pass of its SE blocks'
1×1 convolutions on a 1×1 map is not deterministic on some CPUs (seen on 2-core Xeons; the
book's reproducibility page).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed ``random``, NumPy's global RNG and torch (CPU and CUDA).

    With ``deterministic=True`` torch is asked for deterministic kernels where it has them
    (``warn_only``: an op without one warns instead of failing).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def worker_init_fn(worker_id: int) -> None:
    """Seed a DataLoader worker from torch's per-worker seed (itself from the generator)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def torch_generator(seed: int) -> torch.Generator:
    """A torch Generator for a DataLoader's shuffling and its workers' base seeds."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
