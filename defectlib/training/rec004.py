"""Training of seed 004's recognition networks: DR (block detection) and the ResNet-50 classifier.

Both networks see the same batches (:class:`PairBatchSampler`): every defective training image
is paired with a uniformly random defect-free one (the paper's §3.3: "for each defective
sample, a genuine sample is randomly selected to correspond to it"), ``pairs_per_batch`` pairs
to a batch. Both use Adam with ``weight_decay`` as the L2 term and the same number of steps,
so the comparison differs in the network and its loss only:

DR (``method="dr"``)
    Cross-entropy over a random subset of blocks (:func:`select_blocks`): up to
    ``blocks_per_class`` defective blocks and as many normal ones ("defective blocks and normal
    blocks are randomly selected from defective samples and genuine samples"). Blocks not
    selected do not enter the loss. With two classes the softmax cross-entropy *is* the
    paper's logistic cross-entropy (eq. 2) of the defect probability.
ResNet-50 (``method="resnet50"``)
    Cross-entropy of the image label, on every image of the batch.

L2: Adam's ``weight_decay`` adds ``weight_decay · w`` to every gradient, the gradient of the
paper's ``λ Σ w²`` with ``λ = weight_decay / 2`` (applied to every parameter, biases and
BatchNorm included, as a plain L2 term would be).

Defective images with an empty mask (MagneticTile's four "Uneven" images are labelled
defective and have no annotated pixel; augmentation can also rotate a border defect out of
the image) cannot give blocks to DR: where the defect lies is unknown, so none of their blocks
is known to be defective *or* normal. They stay in the batches (both networks see the same
images; ResNet-50 learns from their label) but contribute no block to DR's loss.

Randomness: ``seed`` fixes the pair order (the sampler's generator) and the block selection (a
second generator, seeded ``seed + BLOCK_STREAM``, saved with checkpoints); model
initialisation and augmentation in the main process follow torch's global RNG, which the
caller seeds (:func:`defectlib.seeding.seed_everything`).

Training runs through :func:`~defectlib.training.loop.fit` (learning-rate schedule, validation,
checkpoints); a non-finite loss raises :class:`FloatingPointError` before that step's update.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Sampler
from tqdm.auto import tqdm

from ..models.fuse import inference_model
from ..models.rec004 import block_labels, image_scores
from ..seeding import torch_generator
from .loop import Checkpoint, History, Schedule, dataset_labels, fit, ordered_loader, plan_batches
from .sampler import _as_labels

__all__ = ["METHODS", "PairBatchSampler", "select_blocks", "train_recognition", "predict_recognition",
           "recognition_loss"]

#: The two training methods: DR's block loss, and the image classifier's.
METHODS = ("dr", "resnet50")
#: Offset of the block-selection generator's seed from the training seed.
BLOCK_STREAM = 7919


class PairBatchSampler(Sampler[list[int]]):
    """Batches of ``pairs_per_batch`` (defective, defect-free) pairs: ``[d, n, d, n, ...]``.

    Defective images are taken in a random order, each once per pass (a new permutation when
    a pass is used up, passes running on across batches); each is paired with a defect-free
    image drawn uniformly at random (with replacement). ``len()`` is ``num_batches``. With a
    seeded ``generator`` the batches are deterministic; each ``iter()`` continues the generator.

    Parameters
    ----------
    labels
        Per-item labels, 1 = defective, 0 = defect-free (list, array, Series or tensor).
    pairs_per_batch
        Pairs per batch (a batch holds twice as many images).
    num_batches
        Batches per iteration (the trainers pass the number of steps).
    generator
        A :class:`torch.Generator`.

    Examples
    --------
    >>> labels = [1, 0, 1, 0, 0, 1]
    >>> batches = list(PairBatchSampler(labels, pairs_per_batch=3, num_batches=2,
    ...                                 generator=torch_generator(0)))
    >>> [[labels[i] for i in b] for b in batches]
    [[1, 0, 1, 0, 1, 0], [1, 0, 1, 0, 1, 0]]
    >>> sorted(batches[0][::2]) == [0, 2, 5]   # every defective image once per pass
    True
    """

    def __init__(self, labels, *, pairs_per_batch: int, num_batches: int,
                 generator: torch.Generator | None = None) -> None:
        array = _as_labels(labels)
        self.defective = torch.from_numpy(np.flatnonzero(array == 1))
        self.defect_free = torch.from_numpy(np.flatnonzero(array == 0))
        if len(self.defective) == 0 or len(self.defect_free) == 0:
            missing = "defective (label 1)" if len(self.defective) == 0 else "defect-free (label 0)"
            raise ValueError(f"PairBatchSampler needs both classes, but there is no {missing} item "
                             f"among the {len(array)} labels")
        for name, value in (("pairs_per_batch", pairs_per_batch), ("num_batches", num_batches)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.pairs_per_batch = int(pairs_per_batch)
        self.num_batches = int(num_batches)
        self.generator = generator

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        generator = self.generator
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        order: list[int] = []
        for _ in range(self.num_batches):
            batch: list[int] = []
            for _ in range(self.pairs_per_batch):
                if not order:
                    order = self.defective[torch.randperm(len(self.defective), generator=generator)].tolist()[::-1]
                partner = int(torch.randint(len(self.defect_free), (), generator=generator))
                batch += [order.pop(), int(self.defect_free[partner])]
            yield batch


def select_blocks(labels: torch.Tensor, usable: torch.Tensor, *, blocks_per_class: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The blocks that enter DR's loss: a boolean mask shaped like ``labels``.

    Up to ``blocks_per_class`` defective blocks, drawn uniformly without replacement from the
    defective blocks of the usable images, and as many normal blocks (at least one), drawn
    from the normal blocks of the usable images (defect-free images and the defect-free parts
    of defective ones). Unusable images (a defective image whose mask is empty; see the
    module notes) give no block.

    Parameters
    ----------
    labels
        Block labels ``(N, gh, gw)``, 1 = defective (:func:`~defectlib.models.rec004.block_labels`).
    usable
        ``(N,)`` bool: the images whose blocks may be chosen.
    blocks_per_class
        The most defective blocks chosen (and the number of normal blocks, when there are
        enough of either).
    generator
        A :class:`torch.Generator` on the CPU.

    Examples
    --------
    >>> labels = torch.zeros(2, 3, 3, dtype=torch.long); labels[0, :2, :2] = 1
    >>> chosen = select_blocks(labels, torch.tensor([True, True]), blocks_per_class=3,
    ...                        generator=torch_generator(0))
    >>> int(labels[chosen].sum()), int((labels[chosen] == 0).sum())
    (3, 3)
    >>> bool(select_blocks(labels, torch.tensor([False, True]), blocks_per_class=3)[0].any())
    False
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be (N, gh, gw), got shape {tuple(labels.shape)}")
    usable = torch.as_tensor(usable, dtype=torch.bool).reshape(-1).cpu()
    if usable.shape[0] != labels.shape[0]:
        raise ValueError(f"usable has {usable.shape[0]} entries for {labels.shape[0]} images")
    if isinstance(blocks_per_class, bool) or not isinstance(blocks_per_class, (int, np.integer)) or blocks_per_class < 1:
        raise ValueError(f"blocks_per_class must be a positive int, got {blocks_per_class!r}")
    flat = labels.detach().cpu().reshape(labels.shape[0], -1)
    allowed = usable[:, None].expand_as(flat)
    defective = torch.nonzero(((flat > 0) & allowed).flatten()).flatten()
    normal = torch.nonzero(((flat == 0) & allowed).flatten()).flatten()

    def pick(pool: torch.Tensor, k: int) -> torch.Tensor:
        k = min(k, len(pool))
        return pool[torch.randperm(len(pool), generator=generator)[:k]]

    chosen_defective = pick(defective, int(blocks_per_class))
    chosen_normal = pick(normal, max(len(chosen_defective), 1))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[chosen_defective] = True
    chosen[chosen_normal] = True
    return chosen.reshape(labels.shape).to(labels.device)


def recognition_loss(output: torch.Tensor, batch: dict, *, method: str, blocks_per_class: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """The loss of one batch: DR's over the selected blocks, or the classifier's over images.

    ``output`` is DR's ``(N, 2, gh, gw)`` map or the classifier's ``(N, 2)``; ``batch`` holds
    ``mask`` ``(N, 1, H, W)`` and ``label`` ``(N,)`` on the output's device. Mean
    cross-entropy (a batch with no usable block at all gives a zero loss with a gradient).
    """
    label = batch["label"].to(output.device).long()
    if method == "resnet50":
        if output.ndim != 2:
            raise ValueError(f"resnet50: the output must be (N, 2), got shape {tuple(output.shape)}")
        return F.cross_entropy(output.float(), label)
    if method != "dr":
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if output.ndim != 4:
        raise ValueError(f"dr: the output must be (N, 2, gh, gw), got shape {tuple(output.shape)}")
    blocks = block_labels(batch["mask"].to(output.device), tuple(output.shape[-2:]))
    usable = (label == 0) | blocks.flatten(1).any(dim=1)
    chosen = select_blocks(blocks, usable, blocks_per_class=blocks_per_class, generator=generator)
    logits = output.float().permute(0, 2, 3, 1)[chosen]
    if logits.shape[0] == 0:
        return output.sum() * 0.0
    return F.cross_entropy(logits, blocks[chosen])


def _check_positive(name: str, key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: {key} must be a positive int, got {value!r}")


def train_recognition(model: nn.Module, dataset, *, method: str, schedule: Schedule, weight_decay: float = 0.0,
                      pairs_per_batch: int, blocks_per_class: int = 16, seed: int, device="cpu",
                      evaluate=None, eval_every: int = 0, checkpoint: Checkpoint | None = None,
                      progress: bool = True) -> History:
    """Train DR or the ResNet-50 classifier on pair batches; return the training history.

    Parameters
    ----------
    model
        :class:`~defectlib.models.rec004.BlockDetector` (``method="dr"``) or the
        ResNet-50 classifier (``method="resnet50"``).
    dataset
        A :class:`~defectlib.data.dataset.SurfaceDataset` (its ``transform`` augments).
    method
        ``"dr"`` or ``"resnet50"`` (the loss; see the module notes).
    schedule, weight_decay
        Steps and learning rates (:class:`~defectlib.training.loop.Schedule`), and the L2
        term (Adam's ``weight_decay``).
    pairs_per_batch
        (defective, defect-free) pairs per batch.
    blocks_per_class
        DR only: the most defective blocks (and as many normal ones) per batch.
    seed
        Pair order and block selection.
    evaluate, eval_every, checkpoint
        As :func:`~defectlib.training.loop.fit`.

    Raises
    ------
    FloatingPointError
        At the first non-finite loss (before that step's update).
    """
    name = f"train_recognition[{method}]"
    if method not in METHODS:
        raise ValueError(f"{name}: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    for key, value in (("pairs_per_batch", pairs_per_batch), ("blocks_per_class", blocks_per_class)):
        _check_positive(name, key, value)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not (
            math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"{name}: weight_decay must be a finite number >= 0, got {weight_decay!r}")

    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr, weight_decay=weight_decay)
    sampler = PairBatchSampler(dataset_labels(dataset), pairs_per_batch=pairs_per_batch,
                               num_batches=schedule.steps, generator=torch_generator(seed))
    blocks = torch_generator(seed + BLOCK_STREAM)

    def step_fn(batch) -> torch.Tensor:
        output = model(batch["image"].to(device))
        return recognition_loss(output, {"mask": batch["mask"], "label": batch["label"]}, method=method,
                                blocks_per_class=blocks_per_class, generator=blocks)

    return fit(name, models=[model], optimizer=optimizer, dataset=dataset, plan=plan_batches(sampler),
               step_fn=step_fn, schedule=schedule, evaluate=evaluate, eval_every=eval_every,
               checkpoint=checkpoint, generators={"blocks": blocks}, progress=progress)


def predict_recognition(model: nn.Module, dataset, *, device="cpu", batch_size: int = 8, threshold: float = 0.5,
                        progress: bool = True) -> pd.DataFrame:
    """Score every item of ``dataset`` in order (on an eval-mode copy of ``model``).

    The forward passes run on :func:`~defectlib.models.fuse.inference_model`'s copy (BatchNorm
    folded into the convolutions: the same function to float rounding, faster).

    Returns
    -------
    pandas.DataFrame
        ``index`` (the dataset index = row of ``dataset.table``), ``score``, the defect
        probability of the image (classifier) or of its most defective block (DR)
        (:func:`~defectlib.models.rec004.image_scores`); for DR also ``normal_blocks``
        (blocks with no mask pixel) and ``fp_blocks`` (those among them called defective at
        ``threshold``), the counts of the block-level false-positive rate.
    """
    _check_positive("predict_recognition", "batch_size", batch_size)
    model = inference_model(model.to(device))
    rows: list[dict] = []
    with torch.inference_mode():
        for batch in tqdm(ordered_loader(dataset, batch_size=batch_size), desc="predict", leave=False,
                          disable=not progress):
            output = model(batch["image"].to(device)).float()
            scores = image_scores(output).cpu()
            if output.ndim == 4:
                normal = block_labels(batch["mask"].to(output.device), tuple(output.shape[-2:])) == 0
                called = torch.softmax(output, dim=1)[:, 1] >= threshold
                n_normal = normal.flatten(1).sum(1).cpu()
                n_fp = (normal & called).flatten(1).sum(1).cpu()
            else:
                n_normal = n_fp = torch.full((len(scores),), -1)
            rows += [{"index": int(i), "score": float(s), "normal_blocks": int(a), "fp_blocks": int(b)}
                     for i, s, a, b in zip(batch["index"].tolist(), scores, n_normal, n_fp)]
    table = pd.DataFrame(rows, columns=["index", "score", "normal_blocks", "fp_blocks"])
    if (table["normal_blocks"] < 0).all():
        table = table.drop(columns=["normal_blocks", "fp_blocks"])
    return table
