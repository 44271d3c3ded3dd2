"""A sampler that alternates defective and defect-free images.

Surface-defect datasets are unbalanced (KolektorSDD: 52 defective images of 399). Seed 000
trains, as Tabernik et al. (2019) did on the same data, with positives and negatives
*alternated*, so both classes are seen equally often whatever their proportion.

Convention
----------
* Position 0, 2, 4, ... of the stream is a defective image, position 1, 3, 5, ... a
  defect-free one (with ``batch_size = 2`` every batch holds one of each).
* Each class is drawn as a random permutation of its images; when a class is exhausted a new
  permutation is drawn. The minority class (normally the defective one) therefore repeats,
  each of its images once per pass over it.
* One "epoch" is, by default, ``2 × n_negative`` samples: every defect-free image is seen
  exactly once and the defective images are repeated to match (the Tabernik et al. 2019
  convention). Pass ``num_samples`` to fix the length instead (the trainers pass
  ``steps × batch_size``).
* With a seeded ``generator`` the stream is deterministic; each ``iter()`` continues the
  generator, so successive epochs differ but a re-seeded generator replays them. Without one
  a fresh seed is drawn from torch's global RNG on every ``iter()`` (like
  :class:`torch.utils.data.RandomSampler`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def _as_labels(labels) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"labels must be 0 (defect-free) or 1 (defective), got dtype {array.dtype}")
    bad = ~np.isin(array, (0, 1))
    if bad.any():
        raise ValueError(
            f"labels must be 0 (defect-free) or 1 (defective); found {sorted(set(array[bad].tolist()))[:5]}"
        )
    return array.astype(np.int64)


class AlternatingSampler(Sampler[int]):
    """Indices alternating defective, defect-free, defective, ... (see the module notes).

    Parameters
    ----------
    labels
        Per-item labels, 1 = defective, 0 = defect-free (a list, array, Series or tensor);
        item ``i`` of the dataset has label ``labels[i]``.
    num_samples
        Length of the stream; default ``2 × (number of defect-free items)`` (one epoch sees
        every defect-free image once).
    generator
        A :class:`torch.Generator` for the permutations (deterministic when seeded).

    Raises
    ------
    ValueError
        If the labels are not 0/1, a class is missing, or ``num_samples`` is not a positive int.

    Examples
    --------
    >>> from defectlib.seeding import torch_generator
    >>> s = AlternatingSampler([0, 0, 0, 0, 1], generator=torch_generator(0))
    >>> len(s)
    8
    >>> [[0, 0, 0, 0, 1][i] for i in s]
    [1, 0, 1, 0, 1, 0, 1, 0]
    """

    def __init__(self, labels, *, num_samples: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        array = _as_labels(labels)
        self.positives = torch.from_numpy(np.flatnonzero(array == 1))
        self.negatives = torch.from_numpy(np.flatnonzero(array == 0))
        if len(self.positives) == 0 or len(self.negatives) == 0:
            missing = "defective (label 1)" if len(self.positives) == 0 else "defect-free (label 0)"
            raise ValueError(
                f"AlternatingSampler needs both classes, but there is no {missing} item among "
                f"the {len(array)} labels"
            )
        if num_samples is None:
            num_samples = 2 * len(self.negatives)
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        self.num_samples = int(num_samples)
        self.generator = generator

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = self.generator
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        pools = [self.positives, self.negatives]
        orders: list[list[int]] = [[], []]
        for position in range(self.num_samples):
            cls = position % 2
            if not orders[cls]:
                pool = pools[cls]
                orders[cls] = pool[torch.randperm(len(pool), generator=generator)].tolist()[::-1]
            yield orders[cls].pop()


__all__ = ["AlternatingSampler"]
