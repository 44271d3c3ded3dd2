"""Training and prediction of seed 004's segmentation networks (the paper's §4.3).

Batches (:class:`BalancedBatchSampler`): every step takes ``pairs_per_batch`` defective and as
many defect-free training images (the paper's step 2, "randomly select n genuine samples and
n defective samples"), each class drawn as a random permutation, a new one when it is used
up, so every image of a class is seen once per pass over that class.

Local image input (:func:`train_seg004` with ``crop_size``, for the improved network): every
image of the batch gets its own random box (:func:`random_crop_box`, steps 3–4; with
``crop_on_defect`` a defective image's box holds one of its defect pixels,
:func:`defect_crop_box`, a deviation for defects much smaller than the crop); the whole
image goes to the backbone, the crop to the branch, the network returns the crop's logits and
the loss is computed on the crop's pixels only (:func:`crop_loss`, step 5). Without
``crop_size`` (plain DeepLabv3+, or the "whole-image training" ablation) the loss covers the
whole image. Both get the same batches (same ``seed``), optimiser and number of steps.

Loss (the paper's eq. 8): the mean binary cross-entropy of the per-pixel defect logit over the
crop's pixels (the two-class cross-entropy of the paper, with one logit), plus L2 through
Adam's ``weight_decay`` (the gradient of ``λ Σ w²`` with ``λ = weight_decay / 2``, on every
parameter); optionally plus a soft Dice term (:func:`soft_dice_loss`), a deviation that lets
the networks learn MagneticTile's tiny defects, where cross-entropy alone is minimised by
predicting nothing. Training runs through :func:`~defectlib.training.loop.fit` (schedule,
validation, checkpoints); the paper trains "until the loss converges".

Crop boxes have their corners on multiples of ``align`` input pixels (16 by default, the
backbone's output stride), so the backbone's feature maps are cut exactly; a crop larger than
the image is the whole image. ``seed`` fixes the batches (the sampler's generator) and the crop
boxes (a second generator, seeded ``seed + CROP_STREAM``, saved with checkpoints); model
initialisation follows torch's global RNG, which the caller seeds.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Sampler
from tqdm.auto import tqdm

from ..models.fuse import inference_model
from ..seeding import torch_generator
from .loop import Checkpoint, History, Schedule, dataset_labels, fit, ordered_loader, plan_batches
from .sampler import _as_labels

__all__ = ["BalancedBatchSampler", "CROP_STREAM", "crop_loss", "defect_crop_box", "predict_seg004",
           "random_crop_box", "soft_dice_loss", "train_seg004"]

#: Offset of the crop generator's seed from the training seed.
CROP_STREAM = 104729
#: Crop corners are multiples of this many input pixels (the backbone's output stride).
CROP_ALIGN = 16


class BalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``n`` defective then ``n`` defect-free indices (``len() == num_batches``).

    Examples
    --------
    >>> s = BalancedBatchSampler([1, 0, 0, 1, 0], n=1, num_batches=3, generator=torch_generator(0))
    >>> [[[1, 0, 0, 1, 0][i] for i in batch] for batch in s]
    [[1, 0], [1, 0], [1, 0]]
    """

    def __init__(self, labels, *, n: int, num_batches: int, generator: torch.Generator | None = None) -> None:
        array = _as_labels(labels)
        self.pools = [torch.from_numpy(np.flatnonzero(array == 1)), torch.from_numpy(np.flatnonzero(array == 0))]
        if any(len(p) == 0 for p in self.pools):
            missing = "defective (label 1)" if len(self.pools[0]) == 0 else "defect-free (label 0)"
            raise ValueError(f"BalancedBatchSampler needs both classes, but there is no {missing} item")
        for name, value in (("n", n), ("num_batches", num_batches)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.n, self.num_batches, self.generator = int(n), int(num_batches), generator

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        generator = self.generator
        if generator is None:
            generator = torch_generator(int(torch.empty((), dtype=torch.int64).random_().item()) % 2**62)
        orders: list[list[int]] = [[], []]

        def take(cls: int) -> int:
            if not orders[cls]:
                pool = self.pools[cls]
                orders[cls] = pool[torch.randperm(len(pool), generator=generator)].tolist()[::-1]
            return orders[cls].pop()

        for _ in range(self.num_batches):
            yield [take(0) for _ in range(self.n)] + [take(1) for _ in range(self.n)]


def random_crop_box(h: int, w: int, crop, generator: torch.Generator | None = None, *,
                    align: int = CROP_ALIGN) -> tuple[int, int, int, int]:
    """A random box ``(top, left, ch, cw)`` of size ``crop = (ch, cw)`` inside an ``h × w`` image.

    ``top`` and ``left`` are uniform over the multiples of ``align`` that keep the box inside;
    a crop side at least the image's is the whole side.

    Examples
    --------
    >>> g = torch_generator(0)
    >>> boxes = [random_crop_box(64, 96, (32, 32), g) for _ in range(50)]
    >>> sorted({b[0] for b in boxes}), sorted({b[1] for b in boxes}), boxes[0][2:]
    ([0, 16, 32], [0, 16, 32, 48, 64], (32, 32))
    >>> random_crop_box(64, 32, (128, 16), g, align=1)[::2]
    (0, 64)
    """
    ch, cw = (int(c) for c in crop)
    if ch < 1 or cw < 1 or align < 1:
        raise ValueError(f"crop sides and align must be positive, got crop={crop!r}, align={align}")
    ch, cw = min(ch, h), min(cw, w)
    corners = []
    for size, side in ((h, ch), (w, cw)):
        positions = (size - side) // align + 1
        corners.append(int(torch.randint(positions, (1,), generator=generator)) * align)
    return corners[0], corners[1], ch, cw


def defect_crop_box(mask: torch.Tensor, crop, generator: torch.Generator | None = None, *,
                    align: int = CROP_ALIGN) -> tuple[int, int, int, int]:
    """A random box ``(top, left, ch, cw)`` of size ``crop`` inside ``mask``'s ``h × w`` image
    that holds a defect pixel: one pixel of the mask drawn uniformly, then a corner uniform over
    the multiples of ``align`` whose box holds it. A mask without a defect pixel gets
    :func:`random_crop_box`.

    Examples
    --------
    >>> mask = torch.zeros(64, 96); mask[40, 70] = 1
    >>> g = torch_generator(0)
    >>> boxes = {defect_crop_box(mask, (32, 32), g) for _ in range(50)}
    >>> all(t <= 40 < t + 32 and l <= 70 < l + 32 for t, l, _, _ in boxes), sorted({b[:2] for b in boxes})
    (True, [(16, 48), (16, 64), (32, 48), (32, 64)])
    """
    h, w = mask.shape[-2:]
    ys, xs = torch.nonzero(mask.reshape(h, w) > 0, as_tuple=True)
    if len(ys) == 0:
        return random_crop_box(h, w, crop, generator, align=align)
    pick = int(torch.randint(len(ys), (1,), generator=generator))
    ch, cw = (min(int(c), side) for c, side in zip(crop, (h, w)))
    corners = []
    for at, size, side in ((int(ys[pick]), h, ch), (int(xs[pick]), w, cw)):
        first = -(-max(0, at - side + 1) // align)  # the first aligned corner whose box reaches the pixel
        last = min(at, size - side) // align
        corners.append((first + int(torch.randint(max(last - first + 1, 1), (1,), generator=generator))) * align)
    return corners[0], corners[1], ch, cw


def _crop_mask(mask: torch.Tensor, boxes) -> torch.Tensor:
    return torch.stack([mask[i, :, t:t + h, l:l + w] for i, (t, l, h, w) in enumerate(boxes)])


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, *, eps: float = 1.0) -> torch.Tensor:
    """``1 - 2 |P ∩ T| / (|P| + |T|)`` of the sigmoid map ``P`` and the mask ``T``, over the
    whole batch (so a batch of defect-free images with an empty prediction costs nothing).

    Examples
    --------
    >>> t = torch.zeros(1, 1, 4, 4); t[..., :2, :2] = 1
    >>> round(float(soft_dice_loss(torch.where(t > 0, 20.0, -20.0), t)), 3)
    0.0
    >>> round(float(soft_dice_loss(torch.full_like(t, -20.0), t)), 3)
    0.8
    """
    prob = torch.sigmoid(logits.float())
    target = target.float()
    overlap = (prob * target).sum()
    return 1 - (2 * overlap + eps) / (prob.sum() + target.sum() + eps)


def crop_loss(model: nn.Module, image: torch.Tensor, mask: torch.Tensor, boxes=None, *,
              dice_weight: float = 0.0) -> torch.Tensor:
    """Mean binary cross-entropy (plus ``dice_weight`` × :func:`soft_dice_loss`) over the
    pixels of the crops (``boxes``, one per image) only.

    ``boxes=None``: the whole image. The mask outside the boxes does not enter the loss.
    """
    if boxes is None:
        logits, target = model(image), mask
    else:
        logits, target = model(image, crop=boxes), _crop_mask(mask, boxes)
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    if dice_weight:
        loss = loss + dice_weight * soft_dice_loss(logits, target)
    return loss


def train_seg004(model: nn.Module, dataset, *, schedule: Schedule, weight_decay: float = 0.0, crop_size=None,
                 crop_on_defect: bool = False, pairs_per_batch: int = 1, dice_weight: float = 0.0, seed: int,
                 device="cpu", evaluate=None, eval_every: int = 0, checkpoint: Checkpoint | None = None,
                 progress: bool = True) -> History:
    """Train ``model`` on batches of ``pairs_per_batch`` defective + as many defect-free images;
    returns the training history.

    ``crop_size=(h, w)``: local image input (the model must accept ``crop``), loss on the crops
    only; with ``crop_on_defect`` a defective image's crop holds one of its defect pixels
    (:func:`defect_crop_box`), otherwise every crop is uniform (:func:`random_crop_box`).
    ``crop_size=None``: whole images (plain DeepLabv3+). ``dice_weight``: the weight of a
    soft Dice term added to the cross-entropy (0: the paper's loss).
    """
    name = "train_seg004"
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise ValueError(f"{name}: weight_decay must be a non-negative number, got {weight_decay!r}")
    if crop_size is not None and not getattr(model, "supports_crop", False):
        raise ValueError(f"{name}: {type(model).__name__} takes no crop; train it with crop_size=None")
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr, weight_decay=weight_decay)
    crops = torch_generator(seed + CROP_STREAM)

    def step_fn(batch) -> torch.Tensor:
        image, mask = batch["image"].to(device), batch["mask"].to(device)
        boxes = None
        if crop_size is not None:
            h, w = image.shape[-2:]
            boxes = [defect_crop_box(m, crop_size, crops) if crop_on_defect else random_crop_box(h, w, crop_size, crops)
                     for m in mask]
        return crop_loss(model, image, mask, boxes, dice_weight=dice_weight)

    sampler = BalancedBatchSampler(dataset_labels(dataset), n=pairs_per_batch, num_batches=schedule.steps,
                                   generator=torch_generator(seed))
    return fit(name, models=[model], optimizer=optimizer, dataset=dataset, plan=plan_batches(sampler),
               step_fn=step_fn, schedule=schedule, evaluate=evaluate, eval_every=eval_every,
               checkpoint=checkpoint, generators={"crops": crops}, progress=progress)


def predict_seg004(model: nn.Module, dataset, *, threshold: float = 0.5, device="cpu", batch_size: int = 4,
                   keep_maps: bool = False, progress: bool = True):
    """Segment every item of ``dataset`` in order, whole images in both paths (on an
    eval-mode copy of ``model``).

    Returns
    -------
    pandas.DataFrame, or (DataFrame, dict) with ``keep_maps=True``
        One row per item: ``index``, pixel counts ``tp``, ``fp``, ``fn``, ``tn`` of the map
        ``sigmoid(logits) >= threshold`` against the mask (at the dataset's size), and
        ``prob_max`` (the map's maximum). With ``keep_maps`` also ``{index: map}``, the
        probability map ``(H, W)`` as float16.
    """
    model = inference_model(model.to(device))  # BatchNorm folded: same function, faster
    rows: list[dict] = []
    maps: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for batch in tqdm(ordered_loader(dataset, batch_size=batch_size), desc="predict", leave=False,
                          disable=not progress):
            logits = model(batch["image"].to(device))
            prob = torch.sigmoid(logits.float())
            target = batch["mask"].to(device) > 0
            if prob.shape != target.shape:
                raise ValueError(f"the model's map {tuple(prob.shape)} is not the mask's {tuple(target.shape)}")
            predicted = prob >= threshold
            tp = (predicted & target).sum(dim=(1, 2, 3)).cpu()
            fp = (predicted & ~target).sum(dim=(1, 2, 3)).cpu()
            fn = (~predicted & target).sum(dim=(1, 2, 3)).cpu()
            pixels = target[0].numel()
            prob_max = prob.amax(dim=(1, 2, 3)).cpu()
            for i, index in enumerate(batch["index"].tolist()):
                t, f_p, f_n = int(tp[i]), int(fp[i]), int(fn[i])
                rows.append({"index": int(index), "tp": t, "fp": f_p, "fn": f_n, "tn": pixels - t - f_p - f_n,
                             "prob_max": float(prob_max[i])})
                if keep_maps:
                    maps[int(index)] = prob[i, 0].cpu().numpy().astype(np.float16)
    table = pd.DataFrame(rows, columns=["index", "tp", "fp", "fn", "tn", "prob_max"])
    return (table, maps) if keep_maps else table
