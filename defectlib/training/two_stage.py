"""Two-stage training of seed 000: segmentation first, then a classifier on the frozen net.

Stage 1 (:func:`train_segmentation`) trains the segmentation network alone with pixel-wise
binary cross-entropy between its 1/8-resolution map and the (dilated) mask reduced to that
size (:func:`seg_targets`). Stage 2 (:func:`train_classifier`) freezes it (:func:`freeze`) and
trains the classification network on its features and map with binary cross-entropy on the
image label. :func:`predict` scores a dataset.

Both stages use Adam and the :class:`~defectlib.training.sampler.AlternatingSampler`
(defective and defect-free images alternated, so both classes are seen equally often).
A *step* is one optimizer update on one batch; a run of ``steps`` steps draws
``steps × batch_size`` samples.

Models are duck-typed:

* ``segnet(x) -> (features, logits)`` (a ``SegOutput`` NamedTuple or any 2-tuple): features
  ``(N, C, h, w)``, logits ``(N, 1, h, w)``;
* ``classifier(features, logits) -> (N,)`` pre-sigmoid logits (``(N, 1)`` is accepted).

These functions write no files and draw no plots; they return losses and predictions and the
experiment code saves them. ``seed`` fixes the sample order and the data-loader workers' seeds;
model initialisation and any randomness inside the model follow torch's global RNG, which the
caller seeds (:func:`defectlib.seeding.seed_everything`) before building the models.

A non-finite loss raises :class:`FloatingPointError` naming the step and the learning rate, so a
diverging run (for example the paper's printed ``lr = 0.01`` on a network that cannot take it)
stops with evidence instead of silently training on NaNs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..models.fuse import inference_model
from ..precision import warn_if_emulated
from ..seeding import torch_generator, worker_init_fn
from .sampler import AlternatingSampler

log = logging.getLogger(__name__)

#: Steps between progress-bar/log updates of the running mean loss.
LOG_EVERY = 50


# --------------------------------------------------------------------------------------
# Targets, freezing
# --------------------------------------------------------------------------------------


def seg_targets(mask: torch.Tensor, size) -> torch.Tensor:
    """The mask ``(N, 1, H, W)`` reduced to the segmentation map's ``size = (h, w)``.

    A map cell is defective (1) if **any** mask pixel in it is (adaptive max pooling). An
    average or nearest-neighbour resize would turn a 1–2 pixel wide crack into cells of value
    ≤ 1/8 or drop it altogether, so thin defects would all but vanish from the target at 1/8
    resolution; max pooling keeps every defect, at the price of slightly fattening it.

    Examples
    --------
    >>> m = torch.zeros(1, 1, 16, 8); m[0, 0, 5, 3] = 1
    >>> seg_targets(m, (2, 1)).flatten().tolist()
    [1.0, 0.0]
    """
    if mask.ndim != 4:
        raise ValueError(f"mask must be (N, 1, H, W), got shape {tuple(mask.shape)}")
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"size must be (h, w), got {size}")
    return F.adaptive_max_pool2d(mask.float(), size)


def freeze(module: nn.Module) -> nn.Module:
    """Stop ``module`` from learning: no parameter requires grad, and eval mode (so
    batch-norm running statistics and dropout are fixed too). Returns the module."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    module.eval()
    return module


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _labels(dataset) -> pd.Series:
    table = getattr(dataset, "table", None)
    if table is None or "label" not in table:
        raise TypeError(
            f"the dataset must have a sample table with a 'label' column (.table['label']), "
            f"like SurfaceDataset; got {type(dataset).__name__}"
        )
    return table["label"]


def _check_steps(name: str, steps, batch_size, lr, log_every=LOG_EVERY) -> None:
    for key, value in (("steps", steps), ("batch_size", batch_size), ("log_every", log_every)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: {key} must be a positive int, got {value!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"{name}: lr must be a positive finite number, got {lr!r}")


def _train_loader(dataset, *, steps: int, batch_size: int, seed: int, num_workers: int) -> DataLoader:
    sampler = AlternatingSampler(_labels(dataset), num_samples=steps * batch_size,
                                 generator=torch_generator(seed))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      worker_init_fn=worker_init_fn, generator=torch_generator(seed))


def _test_loader(dataset, *, batch_size: int, num_workers: int) -> DataLoader:
    """The items of ``dataset`` in order, in batches (for prediction)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      worker_init_fn=worker_init_fn)


def _check_finite(name: str, loss: torch.Tensor, step: int, steps: int, lr: float) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(
            f"{name}: non-finite loss ({value}) at step {step} of {steps} with learning rate "
            f"lr={lr:g}; the run diverged (try a lower lr) or the model produced NaN/inf"
        )
    return value


def _run(name: str, loader: Iterable, step_fn, *, steps: int, lr: float, progress: bool,
         log_every: int) -> list[float]:
    losses: list[float] = []
    with tqdm(total=steps, desc=name, leave=False, disable=not progress) as bar:
        for step, batch in enumerate(loader, start=1):
            losses.append(_check_finite(name, step_fn(batch), step, steps, lr))
            bar.update(1)
            if step % log_every == 0 or step == steps:
                recent = float(np.mean(losses[-log_every:]))
                bar.set_postfix(loss=f"{recent:.4f}")
                log.debug("%s step %d/%d: mean loss of the last %d steps %.5f",
                          name, step, steps, min(log_every, len(losses)), recent)
    return losses


def _classifier_logit(classifier: nn.Module, features, logits, n: int) -> torch.Tensor:
    out = classifier(features, logits)
    if out.numel() != n:
        raise ValueError(f"the classifier must return one logit per image ({n}), got shape {tuple(out.shape)}")
    return out.reshape(n)


# --------------------------------------------------------------------------------------
# Stage 1, stage 2, prediction
# --------------------------------------------------------------------------------------


def train_segmentation(segnet: nn.Module, dataset, *, steps: int, lr: float, batch_size: int = 1,
                       seed: int, device="cpu", num_workers: int = 0, amp: bool = False,
                       progress: bool = True, log_every: int = LOG_EVERY) -> list[float]:
    """Train ``segnet`` alone: Adam(lr), binary cross-entropy between its map logits and
    :func:`seg_targets` of the mask, ``steps`` alternating batches. Returns the per-step losses.

    ``amp``: the forward pass under bfloat16 :func:`autocast` (the loss in float32).

    Raises FloatingPointError at the first non-finite loss (before that step's update).
    """
    name = "train_segmentation"
    _check_steps(name, steps, batch_size, lr, log_every)
    segnet.to(device).train()
    optimizer = torch.optim.Adam(segnet.parameters(), lr=lr)
    criterion = nn.BCEWithLogitsLoss()

    def step_fn(batch) -> torch.Tensor:
        image = batch["image"].to(device)
        mask = batch["mask"].to(device)
        with autocast(device, amp):
            _, logits = segnet(image)
        loss = criterion(logits.float(), seg_targets(mask, logits.shape[-2:]))
        return _optimise(optimizer, loss)

    loader = _train_loader(dataset, steps=steps, batch_size=batch_size, seed=seed, num_workers=num_workers)
    return _run(name, loader, step_fn, steps=steps, lr=lr, progress=progress, log_every=log_every)


def autocast(device, enabled: bool):
    """``torch.autocast`` in bfloat16 on ``device``'s type when ``enabled`` (mixed precision).

    Convolutions and matrix products run in bfloat16, reductions and losses in float32; the
    weights and the optimiser stay float32. No loss scaling is needed for bfloat16. On this
    study's 2-core CPU (AVX-512 BF16) it makes a ResNet-50 training step about 1.6× faster; on
    a CPU without bfloat16 instructions it is emulated and much slower, and a
    ``RuntimeWarning`` says so once (:mod:`defectlib.precision`).

    Examples
    --------
    >>> import torch
    >>> with autocast("cpu", True):
    ...     y = torch.nn.Linear(4, 2)(torch.ones(1, 4))
    >>> y.dtype
    torch.bfloat16
    >>> with autocast("cpu", False):
    ...     y = torch.nn.Linear(4, 2)(torch.ones(1, 4))
    >>> y.dtype
    torch.float32
    """
    kind = torch.device(device).type
    if enabled:
        warn_if_emulated(kind)
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=bool(enabled))


def _optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
    """One Adam step on ``loss``, skipped when it is not finite (the caller raises then)."""
    if math.isfinite(float(loss.detach())):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss


def train_classifier(segnet: nn.Module, classifier: nn.Module, dataset, *, steps: int, lr: float,
                     batch_size: int = 1, seed: int, device="cpu", num_workers: int = 0,
                     amp: bool = False, progress: bool = True, log_every: int = LOG_EVERY) -> list[float]:
    """Train ``classifier`` on the frozen ``segnet``'s ``(features, logits)``.

    ``segnet`` is :func:`freeze`-d (in place, and it stays frozen); its forward passes run on
    :func:`~defectlib.models.fuse.inference_model`'s copy (BatchNorm folded: the same function
    to float rounding, faster) under :func:`torch.no_grad`. Only the classifier's parameters are
    given to Adam(lr). Loss: binary cross-entropy between the classifier's logit and the image
    label. ``amp``: forward passes under bfloat16 :func:`autocast` (the loss in float32).
    Returns per-step losses.
    """
    name = "train_classifier"
    _check_steps(name, steps, batch_size, lr, log_every)
    frozen = inference_model(freeze(segnet.to(device)))
    classifier.to(device).train()
    optimizer = torch.optim.Adam([p for p in classifier.parameters() if p.requires_grad], lr=lr)
    criterion = nn.BCEWithLogitsLoss()

    def step_fn(batch) -> torch.Tensor:
        image = batch["image"].to(device)
        label = batch["label"].to(device).float()
        with autocast(device, amp):
            with torch.no_grad():
                features, logits = frozen(image)
            logit = _classifier_logit(classifier, features, logits, len(label))
        loss = criterion(logit.float(), label)
        return _optimise(optimizer, loss)

    loader = _train_loader(dataset, steps=steps, batch_size=batch_size, seed=seed, num_workers=num_workers)
    return _run(name, loader, step_fn, steps=steps, lr=lr, progress=progress, log_every=log_every)


def predict(segnet: nn.Module, classifier: nn.Module, dataset, *, device="cpu", batch_size: int = 1,
            num_workers: int = 0, keep_maps: bool = False, amp: bool = False, progress: bool = True):
    """Score every item of ``dataset`` in order (both models are put in eval mode).

    The forward passes run on :func:`~defectlib.models.fuse.inference_model`'s copies of the
    two networks (BatchNorm folded into the convolutions, channels-last: the same function to
    float rounding; the proposed network's 1408×512 latency drops from about 170 to 105 ms on
    the study's CPU), under bfloat16 :func:`autocast` with ``amp``.

    Returns
    -------
    pandas.DataFrame, or (DataFrame, dict) with ``keep_maps=True``
        One row per item: ``index`` (the dataset index = row of ``dataset.table``), ``score``
        (sigmoid of the classifier logit, the defect probability) and ``seg_max`` (maximum of
        the sigmoid segmentation map). With ``keep_maps`` also ``{index: map}``, the sigmoid
        segmentation map ``(h, w)`` as a float16 NumPy array.
    """
    segnet = inference_model(segnet.to(device).eval())
    classifier = inference_model(classifier.to(device).eval())
    loader = _test_loader(dataset, batch_size=batch_size, num_workers=num_workers)
    rows: list[dict] = []
    maps: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for batch in tqdm(loader, desc="predict", leave=False, disable=not progress):
            image = batch["image"].to(device)
            with autocast(device, amp):
                features, logits = segnet(image)
                logit = _classifier_logit(classifier, features, logits, len(image))
            score = torch.sigmoid(logit.float()).cpu()
            prob = torch.sigmoid(logits.float())
            seg_max = prob.amax(dim=(1, 2, 3)).cpu()
            for i, index in enumerate(batch["index"].tolist()):
                rows.append({"index": int(index), "score": float(score[i]), "seg_max": float(seg_max[i])})
                if keep_maps:
                    maps[int(index)] = prob[i, 0].cpu().numpy().astype(np.float16)
    table = pd.DataFrame(rows, columns=["index", "score", "seg_max"])
    return (table, maps) if keep_maps else table


__all__ = ["LOG_EVERY", "freeze", "predict", "seg_targets", "train_classifier", "train_segmentation"]
