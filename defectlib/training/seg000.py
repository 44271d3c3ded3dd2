"""Seed 000's two-stage training: segmentation first, then a classifier on the frozen net.

Stage 1 (:func:`train_segmentation`) trains the segmentation network alone with pixel-wise
binary cross-entropy between its 1/8-resolution map and the (dilated) mask reduced to that
size (:func:`seg_targets`). Stage 2 (:func:`train_classifier`) freezes it (:func:`freeze`) and
trains the classification network on its features and map with binary cross-entropy on the
image label. :func:`predict` scores a dataset.

Both stages use Adam, the learning rate of a :class:`~defectlib.training.loop.Schedule`, and
the :class:`~defectlib.training.sampler.AlternatingSampler` (defective and defect-free images
alternated, so both classes are seen equally often); they run through
:func:`~defectlib.training.loop.fit`, so they validate, checkpoint and resume alike.
:func:`train_two_stages` runs both, each validated on a held-out set (:func:`score_summary`)
and checkpointed: the study's folds and a user's own model train through it.

Models are duck-typed:

* ``segnet(x) -> (features, logits)`` (a ``SegOutput`` NamedTuple or any 2-tuple): features
  ``(N, C, h, w)``, logits ``(N, 1, h, w)``;
* ``classifier(features, logits) -> (N,)`` pre-sigmoid logits (``(N, 1)`` is accepted).

``seed`` fixes the sample order; model initialisation follows torch's global RNG, which the
caller seeds (:func:`defectlib.seeding.seed_everything`) before building the models.

**A stalled classifier is trained again.** Now and then the classifier stage never leaves the
constant guess: its training loss stays near ln 2 for the whole schedule while the frozen
network's map maximum separates the images well. :func:`~.loop.stalled` reads that
from the training loss alone, never from validation or test images; :func:`train_two_stages`
then draws the classifier's weights again (:func:`reinitialise`, from ``seed`` and the attempt)
and repeats the stage, up to ``restarts`` times. A stage that trained normally is left as it
is, so the rule changes nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..metrics import average_precision
from ..models.fuse import inference_model
from ..seeding import torch_generator
from .loop import (RESTARTS, Checkpoint, History, Schedule, dataset_labels, fit, ordered_loader, plan_batches,
                   retrain_while_stalled, stalled)
from .sampler import AlternatingSampler


def seg_targets(mask: torch.Tensor, size) -> torch.Tensor:
    """The mask ``(N, 1, H, W)`` reduced to the segmentation map's ``size = (h, w)``.

    A map cell is defective (1) if **any** mask pixel in it is (adaptive max pooling). An
    average or nearest-neighbour resize would turn a 1–2 pixel wide crack into cells of value
    ≤ 1/8 or drop it altogether; max pooling keeps every defect, at the price of slightly
    fattening it.

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


def alternating_plan(dataset, *, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """``steps`` batches of the :class:`AlternatingSampler` stream of ``dataset``, seeded."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    sampler = AlternatingSampler(dataset_labels(dataset), num_samples=steps * batch_size,
                                 generator=torch_generator(seed))
    return plan_batches(sampler, batch_size=batch_size)


def _classifier_logit(classifier: nn.Module, features, logits, n: int) -> torch.Tensor:
    out = classifier(features, logits)
    if out.numel() != n:
        raise ValueError(f"the classifier must return one logit per image ({n}), got shape {tuple(out.shape)}")
    return out.reshape(n)


def train_segmentation(segnet: nn.Module, dataset, *, schedule: Schedule, seed: int, batch_size: int = 1,
                       device="cpu", evaluate=None, eval_every: int = 0, checkpoint: Checkpoint | None = None,
                       progress: bool = True) -> History:
    """Train ``segnet`` alone: Adam at ``schedule``'s learning rates, binary cross-entropy
    between its map logits and :func:`seg_targets` of the mask, on alternating batches.

    Returns the :class:`~defectlib.training.loop.History` (per-step losses, validation records).
    """
    segnet.to(device).train()
    optimizer = torch.optim.Adam(segnet.parameters(), lr=schedule.lr)

    def step_fn(batch) -> torch.Tensor:
        _, logits = segnet(batch["image"].to(device))
        return F.binary_cross_entropy_with_logits(logits.float(), seg_targets(batch["mask"].to(device), logits.shape[-2:]))

    return fit("segmentation", models=[segnet], optimizer=optimizer, dataset=dataset,
               plan=alternating_plan(dataset, steps=schedule.steps, batch_size=batch_size, seed=seed),
               step_fn=step_fn, schedule=schedule, evaluate=evaluate, eval_every=eval_every,
               checkpoint=checkpoint, progress=progress)


def train_classifier(segnet: nn.Module, classifier: nn.Module, dataset, *, schedule: Schedule, seed: int,
                     batch_size: int = 1, device="cpu", evaluate=None, eval_every: int = 0,
                     checkpoint: Checkpoint | None = None, progress: bool = True) -> History:
    """Train ``classifier`` on the frozen ``segnet``'s ``(features, logits)``.

    ``segnet`` is :func:`freeze`-d (in place, and it stays frozen); its forward passes run on
    :func:`~defectlib.models.fuse.inference_model`'s copy (BatchNorm folded: the same function
    to float rounding, faster) without gradients. Only the classifier's parameters are given to
    Adam. Loss: binary cross-entropy between the classifier's logit and the image label.
    The sample order is drawn from ``seed + 1``, so the stages see different sequences.
    """
    frozen = inference_model(freeze(segnet.to(device)))
    classifier.to(device).train()
    optimizer = torch.optim.Adam([p for p in classifier.parameters() if p.requires_grad], lr=schedule.lr)

    def step_fn(batch) -> torch.Tensor:
        image = batch["image"].to(device)
        label = batch["label"].to(device).float()
        with torch.no_grad():
            features, logits = frozen(image)
        logit = _classifier_logit(classifier, features, logits, len(label))
        return F.binary_cross_entropy_with_logits(logit.float(), label)

    return fit("classifier", models=[classifier], optimizer=optimizer, dataset=dataset,
               plan=alternating_plan(dataset, steps=schedule.steps, batch_size=batch_size, seed=seed + 1),
               step_fn=step_fn, schedule=schedule, evaluate=evaluate, eval_every=eval_every,
               checkpoint=checkpoint, progress=progress)


def score_summary(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """One validation record: AP, spread and errors at ``threshold`` of the scores.

    Examples
    --------
    >>> r = score_summary(np.array([0, 0, 1, 1]), np.array([0.1, 0.95, 0.92, 0.3]), 0.9)
    >>> round(r["ap"], 3), r["fp"], r["fn"]
    (0.583, 1.0, 1.0)
    """
    predicted = scores >= threshold
    return {"ap": average_precision(labels, scores), "std": float(np.std(scores)),
            "fp": float((predicted & (labels == 0)).sum()), "fn": float((~predicted & (labels == 1)).sum())}


#: How many times :func:`train_two_stages` trains a stalled classifier again by default.
CLASSIFIER_RESTARTS = RESTARTS


def reinitialise(module: nn.Module, *, seed: int) -> nn.Module:
    """Draw ``module``'s weights again: every submodule's ``reset_parameters`` under
    ``torch.manual_seed(seed)``, in module order. torch's global random state is left as it
    was. Returns the module."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            if sub is not module and callable(getattr(sub, "reset_parameters", None)):
                sub.reset_parameters()
    return module


@dataclass
class TwoStages:
    """What :func:`train_two_stages` returns: each stage's :class:`~defectlib.training.loop.History`,
    and the classifier's stalled attempts (:func:`stalled`) that were trained again, in order."""

    seg: History
    clf: History
    stalled_clf: list[History] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Training time of both stages, stalled attempts included."""
        return self.seg.seconds + self.clf.seconds + sum(h.seconds for h in self.stalled_clf)


def train_two_stages(segnet: nn.Module, classifier: nn.Module, train_set, val_set, *, seg_schedule: Schedule,
                     clf_schedule: Schedule, threshold: float, map_threshold: float, seed: int,
                     checkpoints: Path | None = None, batch_size: int = 1, device="cpu", eval_every: int = 0,
                     restarts: int = CLASSIFIER_RESTARTS, progress: bool = True) -> TwoStages:
    """Seed 000's two stages, validated and checkpointed: :func:`train_segmentation`, then
    :func:`train_classifier` on the frozen network, trained again from new weights
    (:func:`reinitialise` with ``seed * 1000 + attempt``) while it has :func:`stalled`, at most
    ``restarts`` times; if every attempt stalled and ``checkpoints`` is given, the one whose
    training loss ended lowest is kept
    (:func:`~defectlib.training.loop.retrain_while_stalled`).

    Parameters
    ----------
    segnet, classifier : nn.Module
        The networks, trained in place.
    train_set, val_set : SurfaceDataset
        Training and validation images (``val_set.table["label"]`` gives the validation labels).
    seg_schedule, clf_schedule : Schedule
        Each stage's steps and learning rates.
    threshold, map_threshold : float
        Decision thresholds of the classifier's score and of the map maximum.
    checkpoints : Path, optional
        Folder of the two stages' checkpoints (``segmentation.pt``, ``classifier.pt``, and
        ``classifier-restart<n>.pt`` for a classifier trained again); a stage whose checkpoint
        exists resumes from it, a finished one is read back.

    Returns
    -------
    TwoStages
        The validation records hold :func:`score_summary` of the map maximum (at
        ``map_threshold``) for the first stage and of the classifier's score (at ``threshold``)
        for the second.
    """
    labels = val_set.table["label"].to_numpy()

    def validate_segmentation() -> dict[str, float]:
        scores = predict(segnet, None, val_set, device=device, progress=False)["seg_max"].to_numpy()
        return score_summary(labels, scores, map_threshold)

    def validate_classifier() -> dict[str, float]:
        scores = predict(segnet, classifier, val_set, device=device, progress=False)["score"].to_numpy()
        return score_summary(labels, scores, threshold)

    def checkpoint(name: str) -> Checkpoint | None:
        return Checkpoint(Path(checkpoints) / name) if checkpoints is not None else None

    common = dict(seed=seed, batch_size=batch_size, device=device, eval_every=eval_every, progress=progress)
    seg = train_segmentation(segnet, train_set, schedule=seg_schedule, evaluate=validate_segmentation,
                             checkpoint=checkpoint("segmentation.pt"), **common)
    def classifier_attempt(attempt: int) -> History:
        if attempt:
            reinitialise(classifier, seed=seed * 1000 + attempt)
        name = f"classifier-restart{attempt}.pt" if attempt else "classifier.pt"
        return train_classifier(segnet, classifier, train_set, schedule=clf_schedule, evaluate=validate_classifier,
                                checkpoint=checkpoint(name), **common)

    clf, failed = retrain_while_stalled(classifier_attempt, restarts=restarts, name="classifier",
                                        # a finished attempt reads its checkpoint back; without them, the last is kept
                                        restore=classifier_attempt if checkpoints is not None else None)
    return TwoStages(seg, clf, failed)


def predict(segnet: nn.Module, classifier: nn.Module | None, dataset, *, device="cpu", batch_size: int = 1,
            keep_maps: bool = False, progress: bool = True):
    """Score every item of ``dataset`` in order (the modules themselves are left as they are).

    The forward passes run on :func:`~defectlib.models.fuse.inference_model`'s copies of the
    networks (BatchNorm folded into the convolutions: the same function to float rounding).

    Returns
    -------
    pandas.DataFrame, or (DataFrame, dict) with ``keep_maps=True``
        One row per item: ``index`` (the dataset index = row of ``dataset.table``), ``score``
        (sigmoid of the classifier logit, the defect probability; NaN without a classifier)
        and ``seg_max`` (maximum of the sigmoid segmentation map). With ``keep_maps`` also
        ``{index: map}``, the sigmoid segmentation map ``(h, w)`` as a float16 NumPy array.
    """
    segnet = inference_model(segnet.to(device))
    classifier = inference_model(classifier.to(device)) if classifier is not None else None
    rows: list[dict] = []
    maps: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for batch in tqdm(ordered_loader(dataset, batch_size=batch_size), desc="predict", leave=False,
                          disable=not progress):
            image = batch["image"].to(device)
            features, logits = segnet(image)
            if classifier is not None:
                score = torch.sigmoid(_classifier_logit(classifier, features, logits, len(image)).float()).cpu()
            else:
                score = torch.full((len(image),), float("nan"))
            prob = torch.sigmoid(logits.float())
            seg_max = prob.amax(dim=(1, 2, 3)).cpu()
            for i, index in enumerate(batch["index"].tolist()):
                rows.append({"index": int(index), "score": float(score[i]), "seg_max": float(seg_max[i])})
                if keep_maps:
                    maps[int(index)] = prob[i, 0].cpu().numpy().astype(np.float16)
    table = pd.DataFrame(rows, columns=["index", "score", "seg_max"])
    return (table, maps) if keep_maps else table


__all__ = ["CLASSIFIER_RESTARTS", "TwoStages", "alternating_plan", "freeze", "predict", "reinitialise", "seg_targets",
           "stalled", "train_classifier", "train_segmentation", "train_two_stages"]
