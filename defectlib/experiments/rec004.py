"""Seed 004, recognition: fully convolutional block detection ("DR") against a ResNet-50
image classifier, with and without augmentation, 5-fold cross-validation.

The paper's datasets (MDPA, MDPB) are private; the study runs on MagneticTile (the main
stand-in, many small defects) and KolektorSDD. One *cell* of the grid is one dataset, one
method (``dr`` or ``resnet50``) and augmentation on or off, trained and tested over the 5
folds of the folds manifest; every test image gets a defect probability, and an image is
called defective at ``score >= threshold`` (0.5: the arg-max of the 2-class softmax). TPR,
TNR and ACC = (TPR + TNR) / 2 are computed per fold and over all folds together; the
small-defect table (the paper's Table 2) and TPR per defect-size bin come from the same
per-image scores.

Choices the paper leaves open, and deviations (also stated in the book):

- **Block labels**: a 32×32 block (one cell of DR's 7×7 output at 224×224) is defective when
  *any* pixel of the mask, resized to the network input with the any-pixel rule of
  :func:`~defectlib.data.masks.resize_mask`, falls inside it
  (:func:`~defectlib.models.rec004.block_labels`). An image's score is its most
  defective block.
- **Block selection**: per batch, up to ``blocks_per_class`` defective blocks and as many
  normal blocks, uniformly from the pairs' blocks (normal blocks from the defect-free images
  and from the defect-free parts of the defective ones); defective images with an empty mask
  (MagneticTile's four "Uneven" images) give no block to DR's loss but stay in the batches
  (:mod:`defectlib.training.rec004`).
- **Grey input**: both networks take one channel (both datasets are grey); images are resized
  to 224×224 (area interpolation, not the paper's bilinear; KolektorSDD's 1250×500 strips are
  squashed to a square, as the paper's fixed input implies).
- **Augmentation** (:class:`~defectlib.data.augment.Augmentation`; the paper names the
  transforms, not their magnitudes): rotation uniform in ±15°, a perspective distortion of
  scale 0.2 with probability 0.5, brightness and saturation factors in [0.8, 1.2]
  (saturation is a no-op on grey images), applied to image and mask together.
- **Weights**: no pretrained weights are reachable here, so both networks train from scratch
  unless ImageNet weights of ResNet-50 are found locally (the run records which, under
  ``pretrained`` in its provenance).
- **Schedule** (the paper gives none): Adam with a linear warm-up over the first 10 % of the
  steps to a peak learning rate of 1e-3, then cosine decay to zero
  (:class:`~defectlib.training.loop.Schedule`); weight decay 1e-4, 16 blocks per class. The
  ``converged`` profile trains 2 (defective, defect-free) pairs a step, 4,000 steps on
  MagneticTile and 1,000 on KolektorSDD (:data:`STEPS`); at constant rates and a few hundred
  steps the scores stayed nearly constant per fold, and at 2,000 steps on MagneticTile DR's
  training loss was still falling and its validation AP still rising at the end of the first
  fold, with most defect-free validation images flagged at 0.5. Each fold holds out a fifth of its
  training images as validation, scored every ``eval_every`` steps (AP, TPR, TNR and the
  block-level false-positive rate): the recipe was chosen on them, never on a test fold.
  The ``paper`` profile trains 3,000 steps of 8 pairs. Both methods get the same optimiser
  and schedule, and without augmentation the same steps and batches.
- **The image classifier with augmentation trains 8 pairs a step** (:data:`PAIRS_PER_BATCH`;
  the paper's batch size is not given). At 2 pairs, trained from scratch on KolektorSDD, its
  training loss stayed at ln 2 and its validation scores near constant at every peak
  learning rate tried (1e-4, 3e-4 and 1e-3, each followed for 400 to 800 steps of a 1,000-
  or 3,000-step schedule, on the first fold's validation images); at 8 pairs and the
  recipe's learning rate its training loss fell and its validation scores separated within
  400 steps. DR and the classifier without augmentation learn at 2 pairs and keep them; at
  8 pairs the classifier's step costs about four times as much. On MagneticTile it trains
  2,000 steps (:data:`RECIPE_STEPS`), twice the images of the other recipes' 4,000: at
  1,000 steps (their images) its first two folds ended with the training loss still falling,
  above the stall rule's bound, and the validation AP of the first still climbing; at 2 pairs
  and 4,000 steps (the other recipes' batches and steps) its first fold's validation scores
  had fallen to a constant and its loss back to ln 2 by step 1,000. On KolektorSDD it trains
  500 steps, twice the others' images, to save compute. Its validation curves say whether
  that was enough.
- **Augmentation on MagneticTile keeps the 4,000 steps.** DR with augmentation ended its
  first fold there with its validation AP still climbing over the last third and most
  defect-free validation images flagged at 0.5. The same recipe at twice the steps on the
  same fold (a pilot on its validation images, published with the results and drawn in the
  chapter beside the cell's curve) ended at the same validation AP and TNR, with a lower
  training loss: the late climb is the schedule's decay, and more steps fit the training
  images, not the validation ones. Augmentation on and off are compared at the same steps.
- **Block-level false positives**: beside the image-level rates, every test image records its
  normal blocks (no mask pixel) and how many of them DR calls defective; an image is called
  defective when any of its 49 blocks is, so the image TNR hinges on a block false-positive
  rate well under 1 %.
- **L2**: Adam's ``weight_decay`` (the gradient of ``λ Σ w²`` with ``λ = weight_decay / 2``).
- **Folds**: the spine's manifest (``StratifiedGroupKFold`` on the defect class, grouped by
  part), 5 folds on both datasets; not the paper's random re-draws of Table 1's split sizes.
- **Small defects**: defective images whose total defect area is under 100 px, the area
  counted at the 224×224 network input *and* at native resolution (the paper does not say
  which); defective images with an empty mask are not counted as small (their area is
  unknown). KolektorSDD has no defect under 100 px at either resolution.
- **Resolution study** (beyond the paper; :meth:`Rec004GridConfig.resolution_cells`): DR
  without augmentation is also trained on KolektorSDD at 448×192 (:data:`RESOLUTIONS`), the
  same recipe and folds; KolektorSDD's cracks are thin and mostly horizontal, and the 224×224
  input squashes the strips' height by more than five. A larger input has more blocks
  (:func:`blocks`: 84 at 448×192), so the same block false-positive rate costs more image TNR.
- **A stalled network is trained again** from new weights, at most twice
  (:func:`~defectlib.training.loop.retrain_while_stalled`, the rule of seed 000's classifier):
  when the mean training loss of its last tenth of steps stays above half of ln 2 (ln 2
  is a constant guess's loss; :func:`~defectlib.training.loop.stalled`). The rule reads
  the training loss only; a network that trained normally is left exactly as it was. If
  every attempt stalls, the one whose training loss ended lowest is kept. The new
  weights are the network's own initialisation drawn under ``seed * 1000 + attempt``; the
  pairs are the same, the augmentation draws go on. A fold that was trained again records
  ``restarts`` in its checks, the curves of the attempts not kept in its artifact
  (``train_stalled<i>_*``, in order) and their time in its own.
- Each fold is seeded alone (``seed_everything(seed)`` at its start), so a resumed run gives
  the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from ..config import ExperimentConfig
from ..data.dataset import SurfaceDataset
from ..data.summary import areas_at_size
from ..metrics import average_precision, image_metrics, tpr_tnr_acc
from ..results import Run, RunResult
from .common import (AREA_BINS, CONSTANT_STD, CrossValidatedConfig, FoldData, FoldOutcome, all_of, constant_output,
                     area_bins, cross_validate, fold_metrics, one_of, plateau_table, run_cells, timed,
                     validation_positives)
from .common import device as _device

METHODS = ("dr", "resnet50")
AUGMENTS = (True, False)
DATASETS = ("magnetictile", "kolektorsdd", "synthetic")
#: The grid's datasets per profile (smoke runs on synthetic data only).
GRID_DATASETS = {"smoke": ["synthetic"], "converged": ["kolektorsdd", "magnetictile"],
                 "paper": ["magnetictile", "kolektorsdd"]}
METHOD_LABELS = {"dr": "DR (block detection)", "resnet50": "ResNet-50 classifier"}
#: The paper's small-defect threshold (Table 2): total defect area under 100 px.
SMALL_AREA = 100

_MethodName = one_of(METHODS, "method")
_DatasetName = one_of(DATASETS, "dataset")
_MethodNames = all_of(METHODS, "methods")
_DatasetNames = all_of(DATASETS, "datasets")

_REAL = {"dataset": "magnetictile", "n_folds": 5, "input_size": [224, 224], "lr": 1e-4,
         "weight_decay": 1e-4, "blocks_per_class": 16}
#: Steps per fold in the ``converged`` profile, per dataset.
STEPS = {"magnetictile": 4000, "kolektorsdd": 1000, "synthetic": 50}
#: (defective, defect-free) pairs per step in the ``converged`` profile: 2, but 8 for the
#: image classifier with augmentation, which did not move off a constant output at 2.
PAIRS_PER_BATCH = {("resnet50", True): 8}
#: Steps per fold where a recipe of the ``converged`` profile departs from :data:`STEPS`, by
#: (method, augment, dataset): the classifier with augmentation, at 8 pairs a step, sees on
#: MagneticTile in 2,000 steps twice the images the other recipes see in 4,000 (it had not
#: converged at their images), and on KolektorSDD in 500 steps twice the images the others
#: see in 1,000.
RECIPE_STEPS = {("resnet50", True, "magnetictile"): 2000, ("resnet50", True, "kolektorsdd"): 500}
CONVERGED_PAIRS = 2
#: Input sizes (H, W) of the resolution study (``converged`` profile): KolektorSDD's strips
#: (about 1250×500) at twice the main grid's height and near their own aspect ratio, where the
#: 224×224 input squashes their height by more than five.
RESOLUTIONS = [[448, 192]]


def _checked_size(value: list[int]) -> list[int]:
    if len(value) != 2 or any(v < 32 or v % 32 for v in value):
        raise ValueError(f"input_size must be [H, W], multiples of 32, got {value}")
    return value


class Rec004Config(CrossValidatedConfig):
    """One cell of seed 004's recognition grid: a dataset, a method, augmentation on or off."""

    EXPERIMENT: ClassVar[str] = "rec004"
    PROFILES: ClassVar[dict] = {
        "smoke": {"dataset": "synthetic", "n_folds": 3, "input_size": [64, 64], "steps": 6,
                  "lr": 1e-4, "weight_decay": 1e-4, "pairs_per_batch": 2, "blocks_per_class": 4},
        "converged": {**_REAL, "steps": "per-dataset", "pairs_per_batch": "per-method", "lr": 1e-3,
                      "eval_every": 200},
        "paper": {**_REAL, "steps": 3000, "pairs_per_batch": 8, "eval_every": 500},
    }

    #: ``dr`` (block detection) or ``resnet50`` (image classifier).
    method: _MethodName = "dr"
    #: Rotation, perspective, brightness and saturation on the training images (and masks).
    augment: bool = True
    #: magnetictile | kolektorsdd | synthetic (stand-ins for the paper's private MDPA/MDPB).
    dataset: _DatasetName = "magnetictile"
    n_folds: int = Field(default=5, ge=2)
    #: Seed of the folds manifest (the spine's folds); ``seed`` seeds training.
    folds_seed: int = 0
    #: Network input (H, W), multiples of 32 (one DR block is 32×32 input pixels).
    input_size: list[int] = [224, 224]
    #: Adam steps per fold; each step is one batch of ``pairs_per_batch`` pairs.
    steps: int = Field(ge=1)
    #: Peak learning rate (:class:`~defectlib.training.loop.Schedule`).
    lr: float = Field(gt=0)
    #: Share of the steps spent warming the learning rate up.
    warmup: float = Field(default=0.1, ge=0, lt=1)
    #: Adam's weight decay: the paper's L2 term.
    weight_decay: float = Field(default=1e-4, ge=0)
    pairs_per_batch: int = Field(ge=1)
    #: DR: the most defective blocks (and as many normal ones) in a batch's loss.
    blocks_per_class: int = Field(default=16, ge=1)
    #: An image is called defective when its probability is at least this.
    threshold: float = 0.5
    #: Batch size at test time (no effect on the scores).
    eval_batch_size: int = Field(default=8, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _per_dataset(cls, data):
        # "per-dataset" steps and "per-method" pairs (the converged profile): STEPS and
        # RECIPE_STEPS, PAIRS_PER_BATCH.
        if not isinstance(data, dict):
            return data
        recipe = (data.get("method", "dr"), bool(data.get("augment", True)))
        if data.get("steps") == "per-dataset":
            dataset = data.get("dataset", "magnetictile")
            data = {**data, "steps": RECIPE_STEPS.get((*recipe, dataset), STEPS.get(dataset, 1))}
        if data.get("pairs_per_batch") == "per-method":
            data = {**data, "pairs_per_batch": PAIRS_PER_BATCH.get(recipe, CONVERGED_PAIRS)}
        return data

    @field_validator("input_size")
    @classmethod
    def _input_size(cls, value: list[int]) -> list[int]:
        return _checked_size(value)


def _validation_summary(labels: np.ndarray, scores: pd.DataFrame, threshold: float) -> dict[str, float]:
    values = scores["score"].to_numpy()
    rates_ = tpr_tnr_acc(labels, values, threshold=threshold)
    record = {"ap": average_precision(labels, values), "std": float(np.std(values)), "tpr": rates_["tpr"],
              "tnr": rates_["tnr"]}
    if "fp_blocks" in scores:
        record["block_fpr"] = float(scores["fp_blocks"].sum() / max(int(scores["normal_blocks"].sum()), 1))
    return record


def _train_fold(cfg: Rec004Config, data: FoldData, current: Run, *, checkpoints: Path,
                progress: bool = True) -> FoldOutcome:
    import torch

    from ..data.augment import Augmentation
    from ..models import build_model
    from ..training import Checkpoint, History, Schedule
    from ..training.loop import retrain_while_stalled
    from ..training.rec004 import predict_recognition, train_recognition

    device = _device()
    size = tuple(cfg.input_size)
    train_set = SurfaceDataset(data.train, size=size, transform=Augmentation() if cfg.augment else None)
    val_set = SurfaceDataset(data.val, size=size)
    test_set = SurfaceDataset(data.test, size=size)
    val_labels = data.val["label"].to_numpy()

    model = build_model(f"rec004/{cfg.method}").to(device)

    def validate() -> dict[str, float]:
        scores = predict_recognition(model, val_set, device=device, batch_size=cfg.eval_batch_size,
                                     threshold=cfg.threshold, progress=False)
        return _validation_summary(val_labels, scores, cfg.threshold)

    def attempt(n: int) -> History:
        if n:  # new weights, drawn as the first were (the network's own initialisation), seeded apart
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed * 1000 + n)
                model.load_state_dict(build_model(f"rec004/{cfg.method}").state_dict())
        return train_recognition(
            model, train_set, method=cfg.method, schedule=Schedule(cfg.steps, cfg.lr, warmup=cfg.warmup),
            weight_decay=cfg.weight_decay, pairs_per_batch=cfg.pairs_per_batch, blocks_per_class=cfg.blocks_per_class,
            seed=cfg.seed, device=device, evaluate=validate, eval_every=cfg.eval_every,
            checkpoint=Checkpoint(checkpoints / (f"model-restart{n}.pt" if n else "model.pt")), progress=progress,
        )

    history, stalled_attempts = retrain_while_stalled(attempt, name=f"train_recognition[{cfg.method}]",
                                                      restore=attempt)  # a finished attempt reads its checkpoint back
    scores, predict_s = timed(predict_recognition, model, test_set, device=device, batch_size=cfg.eval_batch_size,
                              threshold=cfg.threshold, progress=progress)
    if scores["index"].tolist() != list(range(len(test_set))):
        raise RuntimeError("predict_recognition returned the test images out of order")

    part = data.test[["sample_id", "label", "defect_class", "defect_area"]].reset_index(drop=True)
    part.insert(1, "fold", data.fold)
    part["defect_area_input"] = areas_at_size(data.test, size)
    part["score"] = scores["score"].to_numpy()
    for column in ("normal_blocks", "fp_blocks"):
        if column in scores:
            part[column] = scores[column].to_numpy()
    current.save_artifact(
        f"fold{data.fold}",
        **history.arrays("train"),
        **{k: v for i, h in enumerate(stalled_attempts) for k, v in h.arrays(f"train_stalled{i}").items()},
        train_s=np.array(history.seconds + sum(h.seconds for h in stalled_attempts)),
        predict_s=np.array(predict_s),
        pretrained=np.array(str(getattr(model, "pretrained", None))),
    )
    final_val = history.evals[-1]
    checks = {"constant_output": constant_output(part["score"]) or final_val["std"] < CONSTANT_STD,
              "test_score_std": float(part["score"].std()), "val_score_std": final_val["std"],
              "val_ap": final_val["ap"]}
    if stalled_attempts:  # absent from folds that trained at the first attempt
        checks["restarts"] = len(stalled_attempts)
    seconds = history.seconds + sum(h.seconds for h in stalled_attempts) + predict_s
    return FoldOutcome(part=part, seconds=seconds, checks=checks)


def _metrics(samples: pd.DataFrame, threshold: float) -> dict:
    metrics = image_metrics(samples["label"].to_numpy(), samples["score"].to_numpy(), threshold=threshold)
    if "fp_blocks" in samples:
        metrics["block_fpr"] = float(samples["fp_blocks"].sum() / max(int(samples["normal_blocks"].sum()), 1))
    return metrics


def cell_metrics(cfg: Rec004Config, samples: pd.DataFrame) -> dict:
    """A cell's metrics from its test samples (all folds together, and per fold)."""
    return fold_metrics(samples, partial(_metrics, threshold=cfg.threshold))


def run(cfg: Rec004Config, *, progress: bool = True) -> RunResult:
    """Train and test one grid cell over all folds (or read it from the results cache)."""
    return cross_validate(cfg, _train_fold, partial(cell_metrics, cfg),
                          desc=f"{cfg.dataset} {cfg.method} aug={'on' if cfg.augment else 'off'}",
                          progress=progress, record_pretrained=True)


def grid_configs(profile: str, *, datasets=None, methods=METHODS, augments=AUGMENTS,
                 **overrides) -> list[Rec004Config]:
    """The configs of the grid ``datasets × methods × augments`` under one profile.

    ``datasets=None`` takes the profile's (:data:`GRID_DATASETS`).
    """
    datasets = GRID_DATASETS.get(profile, ["magnetictile"]) if datasets is None else datasets
    return [
        Rec004Config.from_profile(profile, dataset=d, method=m, augment=bool(a), **overrides)
        for d in datasets
        for m in methods
        for a in augments
    ]


def run_grid(configs: list[Rec004Config], *, compute: bool = True, progress: bool = True) -> list[RunResult]:
    """The finished runs of ``configs`` (:func:`~defectlib.experiments.common.run_cells` with
    this experiment's :func:`run`)."""
    return run_cells(configs, run, compute=compute, progress=progress)


def _cell(result: RunResult) -> dict:
    cfg = result.provenance["config"]
    return {"dataset": cfg["dataset"], "method": cfg["method"], "augment": bool(cfg["augment"]),
            "input": "×".join(str(v) for v in cfg["input_size"])}


def blocks(input_size) -> int:
    """DR's blocks per image at ``input_size`` (H, W): one per 32×32 input pixels.

    Examples
    --------
    >>> blocks([224, 224]), blocks([448, 192])
    (49, 84)
    """
    return (int(input_size[0]) // 32) * (int(input_size[1]) // 32)


def grid_table(results: list[RunResult]) -> pd.DataFrame:
    """One row per cell and test fold, plus one per cell over all folds (``fold == "all"``).

    Columns: dataset, method, augment, input (H×W), fold, tpr, tnr, acc, ap, n, n_positive, block_fpr (DR's
    share of normal blocks called defective; NaN for the classifier), and the cell's wall time
    in minutes (on the ``all`` rows).
    """
    keys = ("tpr", "tnr", "acc", "ap", "n", "n_positive")
    rows = []
    for r in results:
        cell, m = _cell(r), r.metrics
        for fold, fm in sorted(m["per_fold"].items(), key=lambda kv: int(kv[0])):
            rows.append({**cell, "fold": str(fold), **{k: fm[k] for k in keys},
                         "block_fpr": fm.get("block_fpr", math.nan), "wall_time_min": math.nan})
        rows.append({**cell, "fold": "all", **{k: m[k] for k in keys}, "block_fpr": m.get("block_fpr", math.nan),
                     "wall_time_min": r.provenance["wall_time_s"] / 60})
    columns = ["dataset", "method", "augment", "input", "fold", *keys, "block_fpr", "wall_time_min"]
    return pd.DataFrame(rows, columns=columns)


#: The two levels :func:`paired_comparison` sets side by side, per factor: (reference, other).
PAIRED_LEVELS = {"augment": (False, True), "method": ("resnet50", "dr")}


def paired_comparison(results: list[RunResult], by: str = "augment") -> pd.DataFrame:
    """Two cells that differ only in ``by`` (``"augment"``: off against on; ``"method"``: the
    ResNet-50 classifier against DR), where both are finished.

    One row per pair: the other columns of the cell (dataset, input, and ``method`` or
    ``augment``), the rates over all test folds of the reference level and of the other
    (``tpr_ref``, ``tpr_other``, and so for tnr, acc, ap), and for ACC and AP the test folds on
    which the other level did better (``acc_folds_better``, ``ap_folds_better``) out of
    ``folds``: the two cells are tested on the same folds, so each fold is a paired comparison.

    Examples
    --------
    >>> def cell(augment, acc):
    ...     per_fold = {str(f): {"tpr": a, "tnr": a, "acc": a, "ap": a, "n": 10, "n_positive": 5}
    ...                 for f, a in enumerate(acc)}
    ...     m = {**per_fold["0"], "acc": sum(acc) / len(acc), "ap": sum(acc) / len(acc), "per_fold": per_fold}
    ...     return RunResult(key=str(augment), path=Path("."), samples=pd.DataFrame(), metrics=m,
    ...                      provenance={"wall_time_s": 60, "config": {"dataset": "toy", "method": "dr",
    ...                                  "augment": augment, "input_size": [224, 224]}})
    >>> row = paired_comparison([cell(False, [0.5, 0.6, 0.7]), cell(True, [0.6, 0.5, 0.8])]).iloc[0]
    >>> round(float(row["acc_other"] - row["acc_ref"]), 3), int(row["acc_folds_better"]), int(row["folds"])
    (0.033, 2, 3)
    """
    if by not in PAIRED_LEVELS:
        raise ValueError(f"by must be one of {', '.join(PAIRED_LEVELS)}, got {by!r}")
    ref, other = PAIRED_LEVELS[by]
    keys = ["dataset", "method" if by == "augment" else "augment", "input"]
    rates_ = ["tpr", "tnr", "acc", "ap"]
    rows = []
    for values, cells in grid_table(results).groupby(keys, sort=False):
        first, second = cells[cells[by] == ref], cells[cells[by] == other]
        if first.empty or second.empty:
            continue
        whole = {"ref": first[first["fold"] == "all"].iloc[0], "other": second[second["fold"] == "all"].iloc[0]}
        folds = first[first["fold"] != "all"].set_index("fold").join(
            second[second["fold"] != "all"].set_index("fold"), lsuffix="_ref", rsuffix="_other", how="inner")
        rows.append({**dict(zip(keys, values)),
                     **{f"{k}_{level}": float(whole[level][k]) for k in rates_ for level in ("ref", "other")},
                     "acc_folds_better": int((folds["acc_other"] > folds["acc_ref"]).sum()),
                     "ap_folds_better": int((folds["ap_other"] > folds["ap_ref"]).sum()), "folds": len(folds)})
    columns = [*keys, *(f"{k}_{level}" for k in rates_ for level in ("ref", "other")), "acc_folds_better",
               "ap_folds_better", "folds"]
    return pd.DataFrame(rows, columns=columns)


def rates(positive_scores, negative_scores, *, threshold: float = 0.5) -> dict:
    """TPR over ``positive_scores``, TNR over ``negative_scores``, ACC = their mean.

    Like :func:`~defectlib.metrics.tpr_tnr_acc`, but either group may be empty (its rate is
    then ``nan``), and the counts come with the rates.

    Examples
    --------
    >>> rates([0.9, 0.2], [0.1, 0.1, 0.7, 0.3])
    {'tpr': 0.5, 'tnr': 0.75, 'acc': 0.625, 'n_positive': 2, 'n_negative': 4}
    >>> rates([], [0.1])
    {'tpr': nan, 'tnr': 1.0, 'acc': nan, 'n_positive': 0, 'n_negative': 1}
    """
    pos = np.asarray(positive_scores, dtype=float).reshape(-1)
    neg = np.asarray(negative_scores, dtype=float).reshape(-1)
    if len(pos) + len(neg) == 0:
        return {"tpr": math.nan, "tnr": math.nan, "acc": math.nan, "n_positive": 0, "n_negative": 0}
    r = tpr_tnr_acc(np.r_[np.ones(len(pos), int), np.zeros(len(neg), int)], np.r_[pos, neg], threshold=threshold)
    return {**r, "n_positive": int(len(pos)), "n_negative": int(len(neg))}


def _area_column(area: str) -> str:
    if area not in ("input", "native"):
        raise ValueError(f"area must be 'input' (at the network input) or 'native', got {area!r}")
    return "defect_area_input" if area == "input" else "defect_area"


def _threshold(result: RunResult) -> float:
    return float(result.provenance["config"]["threshold"])


def small_defect_table(results: list[RunResult], *, max_area: float = SMALL_AREA, area: str = "input") -> pd.DataFrame:
    """The paper's Table 2: defective images with total defect area under ``max_area`` px
    against all defect-free images, over all test folds together.

    ``area="input"`` counts the area on the mask resized to the cell's network input,
    ``"native"`` at the image's own resolution. Defective images with an empty mask are
    left out (their area is unknown). One row per cell: dataset, method, augment, input, area,
    tpr, tnr, acc, n_small, n_defect_free.
    """
    column = _area_column(area)
    rows = []
    for r in results:
        s = r.samples
        small = s[(s["label"] == 1) & (s["defect_area"] > 0) & (s[column] < max_area)]
        free = s[s["label"] == 0]
        m = rates(small["score"], free["score"], threshold=_threshold(r))
        rows.append({**_cell(r), "area": area, "tpr": m["tpr"], "tnr": m["tnr"], "acc": m["acc"],
                     "n_small": m["n_positive"], "n_defect_free": m["n_negative"]})
    return pd.DataFrame(rows, columns=["dataset", "method", "augment", "input", "area", "tpr", "tnr", "acc",
                                       "n_small", "n_defect_free"])


def size_bin_tpr(results: list[RunResult], bins=AREA_BINS, *, area: str = "native") -> pd.DataFrame:
    """TPR per defect-area bin ``[bins[i], bins[i+1])`` (pixels), over all test folds.

    Defective images with an empty mask are left out. One row per cell and bin: dataset,
    method, augment, input, bin (a label such as ``"100–299"``), low, high, n, detected, tpr
    (``nan`` for an empty bin).
    """
    column = _area_column(area)
    rows = []
    for r in results:
        s = r.samples
        defective = s[(s["label"] == 1) & (s["defect_area"] > 0)]
        threshold = _threshold(r)
        for low, high, label in area_bins(bins):
            inside = defective[(defective[column] >= low) & (defective[column] < high)]
            detected = int((inside["score"] >= threshold).sum())
            rows.append({**_cell(r), "bin": label, "low": low, "high": high,
                         "n": int(len(inside)), "detected": detected,
                         "tpr": detected / len(inside) if len(inside) else math.nan})
    return pd.DataFrame(rows, columns=["dataset", "method", "augment", "input", "bin", "low", "high", "n", "detected",
                                       "tpr"])


def missed_defects(results: list[RunResult], *, confident: float = 0.1) -> pd.DataFrame:
    """How the defects a cell misses at its threshold differ from those it finds, over all
    test folds.

    One row per cell: dataset, method, augment, input, n (defective images with a mask), missed,
    missed_confidently (score under ``confident``: no threshold near the decision rule's
    recovers them), the median defect area in pixels of the missed and of the found ones at
    the network input, and ``area_kept``, the median share of a defect's native pixels left at
    the input (the resize's factor).

    Examples
    --------
    >>> samples = pd.DataFrame({"label": [1, 1, 1, 0], "defect_area": [1000, 4000, 2000, 0],
    ...                         "defect_area_input": [100, 400, 200, 0], "score": [0.01, 0.9, 0.3, 0.2]})
    >>> r = RunResult(key="k", path=Path("."), samples=samples, metrics={},
    ...               provenance={"config": {"dataset": "toy", "method": "dr", "augment": False,
    ...                                      "input_size": [224, 224], "threshold": 0.5}})
    >>> row = missed_defects([r]).iloc[0]
    >>> int(row["n"]), int(row["missed"]), int(row["missed_confidently"]), float(row["missed_area_input"])
    (3, 2, 1, 150.0)
    >>> float(row["found_area_input"]), float(row["area_kept"])
    (400.0, 0.1)
    """
    rows = []
    for r in results:
        s = r.samples
        defective = s[(s["label"] == 1) & (s["defect_area"] > 0)]
        missed = defective["score"] < _threshold(r)
        rows.append({**_cell(r), "n": int(len(defective)), "missed": int(missed.sum()),
                     "missed_confidently": int((defective["score"] < confident).sum()),
                     "missed_area_input": float(defective.loc[missed, "defect_area_input"].median()),
                     "found_area_input": float(defective.loc[~missed, "defect_area_input"].median()),
                     "area_kept": float((defective["defect_area_input"] / defective["defect_area"]).median())})
    return pd.DataFrame(rows, columns=["dataset", "method", "augment", "input", "n", "missed", "missed_confidently",
                                       "missed_area_input", "found_area_input", "area_kept"])


def false_blocks(results: list[RunResult]) -> pd.DataFrame:
    """How DR's false blocks fall on the defect-free test images, over all test folds.

    An image is called defective when any of its blocks is. Were the false blocks spread over
    the images independently, a defect-free image with ``blocks`` blocks would stay negative
    with probability ``(1 - block_fpr) ** blocks``. One row per DR cell: dataset, augment,
    input, n (defect-free images), block_fpr (over their blocks), tnr_if_independent, tnr (at
    the cell's threshold), flagged (defect-free images with a false block) and
    blocks_per_flagged (their mean number of false blocks): where that is above 1 the false
    blocks gather on some images and the measured TNR is above the independent figure.

    Examples
    --------
    Four defect-free images of 49 blocks, one of them with four false blocks:

    >>> samples = pd.DataFrame({"label": [0, 0, 0, 0], "score": [0.9, 0.1, 0.2, 0.1],
    ...                         "normal_blocks": [49] * 4, "fp_blocks": [4, 0, 0, 0]})
    >>> r = RunResult(key="k", path=Path("."), samples=samples, metrics={},
    ...               provenance={"config": {"dataset": "toy", "method": "dr", "augment": False,
    ...                                      "input_size": [224, 224], "threshold": 0.5}})
    >>> row = false_blocks([r]).iloc[0]
    >>> float(row["tnr"]), round(float(row["tnr_if_independent"]), 3)
    (0.75, 0.364)
    >>> int(row["flagged"]), float(row["blocks_per_flagged"])
    (1, 4.0)
    """
    columns = ["dataset", "augment", "input", "n", "block_fpr", "tnr_if_independent", "tnr", "flagged",
               "blocks_per_flagged"]
    rows = []
    for r in results:
        free = r.samples[r.samples["label"] == 0]
        if "fp_blocks" not in free or free.empty:
            continue
        cell = _cell(r)
        rate = float(free["fp_blocks"].sum() / max(int(free["normal_blocks"].sum()), 1))
        flagged = free[free["fp_blocks"] > 0]
        rows.append({"dataset": cell["dataset"], "augment": cell["augment"], "input": cell["input"], "n": len(free),
                     "block_fpr": rate, "tnr_if_independent": (1 - rate) ** blocks(r.provenance["config"]["input_size"]),
                     "tnr": float((free["score"] < _threshold(r)).mean()), "flagged": len(flagged),
                     "blocks_per_flagged": float(flagged["fp_blocks"].mean()) if len(flagged) else math.nan})
    return pd.DataFrame(rows, columns=columns)


def score_spread(results: list[RunResult], *, quantiles=(0.5, 0.9)) -> pd.DataFrame:
    """Where each cell's image scores fall, over all test folds: the cell (dataset, method,
    augment, input), its threshold, the ``quantiles`` of the defect-free images' scores
    (``free_q50``, ``free_q90``, ...) and of the defective ones' taken from below
    (``defective_q50``, ``defective_q10``, ...: the score that a share ``1 - q`` of defective
    images stay under), and the TNR and TPR at the threshold.

    An image's score is DR's most defective block's probability, or the classifier's, so a
    defect-free ``free_q50`` above the threshold means most defect-free images are flagged.

    Examples
    --------
    >>> samples = pd.DataFrame({"label": [0, 0, 0, 0, 1, 1], "score": [0.1, 0.2, 0.3, 0.7, 0.6, 0.95]})
    >>> r = RunResult(key="k", path=Path("."), samples=samples, metrics={},
    ...               provenance={"config": {"dataset": "toy", "method": "dr", "augment": True,
    ...                                      "input_size": [224, 224], "threshold": 0.5}})
    >>> row = score_spread([r]).iloc[0]
    >>> float(row["free_q50"]), float(row["tnr"]), float(row["tpr"])
    (0.25, 0.75, 1.0)
    """
    names = [f"q{round(100 * q)}" for q in quantiles]
    columns = ["dataset", "method", "augment", "input", "threshold", *(f"free_{n}" for n in names),
               *(f"defective_q{round(100 * (1 - q))}" for q in quantiles), "tnr", "tpr"]
    rows = []
    for r in results:
        s, threshold = r.samples, _threshold(r)
        free, defective = s.loc[s["label"] == 0, "score"], s.loc[s["label"] == 1, "score"]
        rows.append({**_cell(r), "threshold": threshold,
                     **{f"free_{n}": float(free.quantile(q)) for n, q in zip(names, quantiles)},
                     **{f"defective_q{round(100 * (1 - q))}": float(defective.quantile(1 - q)) for q in quantiles},
                     "tnr": float((free < threshold).mean()), "tpr": float((defective >= threshold).mean())})
    return pd.DataFrame(rows, columns=columns)


def training_curves(result: RunResult) -> dict[int, dict[str, np.ndarray]]:
    """The per-fold training curves stored with a run: ``train_losses`` (every step),
    ``train_eval_step`` and the validation figures ``train_eval_<name>``."""
    return {int(f): {k: v for k, v in result.artifact(f"fold{f}").items() if k.startswith("train_")}
            for f in sorted(result.samples["fold"].unique())}


class Rec004GridConfig(ExperimentConfig):
    """The recognition chapter: which datasets, methods and augmentation settings, under which
    profile, and the input sizes of the resolution study beyond the paper."""

    EXPERIMENT: ClassVar[str] = "rec004-grid"
    PROFILES: ClassVar[dict] = {
        "smoke": {"datasets": list(GRID_DATASETS["smoke"]), "compute": True, "resolutions": [[96, 64]],
                  "resolution_dataset": "synthetic"},
        "converged": {"datasets": list(GRID_DATASETS["converged"]), "compute": False,
                      "resolutions": RESOLUTIONS},
        "paper": {"datasets": list(GRID_DATASETS["paper"]), "compute": True, "resolutions": []},
    }

    datasets: _DatasetNames
    methods: _MethodNames = list(METHODS)
    augments: list[bool] = list(AUGMENTS)
    #: Train the cells missing from the results cache (False: show the cached ones and list
    #: the rest as pending; ``defectlib grid`` computes them).
    compute: bool = True
    #: Input sizes (H, W) at which DR without augmentation is also trained on
    #: ``resolution_dataset``, beside the main grid's (:data:`RESOLUTIONS`).
    resolutions: list[list[int]] = []
    resolution_dataset: _DatasetName = "kolektorsdd"

    @field_validator("resolutions")
    @classmethod
    def _resolutions(cls, value: list[list[int]]) -> list[list[int]]:
        return [_checked_size(size) for size in value]

    def cells(self) -> list[Rec004Config]:
        return grid_configs(self.profile, datasets=self.datasets, methods=self.methods,
                            augments=self.augments, seed=self.seed)

    def resolution_cells(self) -> list[Rec004Config]:
        """DR without augmentation on ``resolution_dataset`` at every size of ``resolutions``."""
        return [Rec004Config.from_profile(self.profile, dataset=self.resolution_dataset, method="dr", augment=False,
                                          input_size=list(size), seed=self.seed)
                for size in self.resolutions]


def best_cells(results: list[RunResult], *, confident: float = 0.1) -> pd.DataFrame:
    """Per dataset, the cell with the highest AP over all test folds: its rates, the defects it
    misses (and how many of them score under ``confident``), and how much its validation AP
    moved over the last third of training (mean and largest over the folds,
    :func:`~defectlib.experiments.common.curve_change`; near zero: the recipe has flattened),
    and on how many folds it rose by more than the validation images can resolve
    (:func:`~defectlib.experiments.common.plateau_table`'s ``rising``).

    One row per dataset: dataset, method, augment, input, tpr, tnr, ap, ap_chance, n_masked
    (defective test images with a mask, as :func:`missed_defects` counts them), missed,
    missed_confidently, val_ap_change_mean, val_ap_change_max, val_positives (defective
    validation images per fold, the fewest), rising_folds, n_folds.
    """
    rows, memo = [], {}
    for r in results:
        s, m = r.samples, r.metrics
        missed = missed_defects([r], confident=confident).iloc[0]
        positives = validation_positives(r.config, memo)
        plateau = plateau_table({"cell": training_curves(r)}, prefix="train", positives={"cell": positives})
        change = plateau["change_last_third"]
        rows.append({**_cell(r), "tpr": m["tpr"], "tnr": m["tnr"], "ap": m["ap"],
                     "ap_chance": float(s["label"].mean()), "n_masked": int(missed["n"]),
                     "missed": int(missed["missed"]), "missed_confidently": int(missed["missed_confidently"]),
                     "val_ap_change_mean": float(change.mean()), "val_ap_change_max": float(change.max()),
                     "val_positives": min(positives.values()), "rising_folds": int(plateau["rising"].sum()),
                     "n_folds": len(plateau)})
    columns = ["dataset", "method", "augment", "input", "tpr", "tnr", "ap", "ap_chance", "n_masked", "missed",
               "missed_confidently", "val_ap_change_mean", "val_ap_change_max", "val_positives", "rising_folds",
               "n_folds"]
    table = pd.DataFrame(rows, columns=columns)
    if table.empty:
        return table
    return table.loc[table.groupby("dataset", sort=False)["ap"].idxmax()].reset_index(drop=True)
