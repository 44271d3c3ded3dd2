"""Seed 000: lightweight segmentation + classification on KolektorSDD, and its baselines.

One *cell* of the study's grid is one model (``proposed``, ``deeplabv3plus``, ``unet``) at one
annotation dilation, trained and tested over the 3 folds of the folds manifest. For every
fold: the segmentation network trains on the dilated masks, is frozen, the classification
network trains on top, and every test image gets a probability. The per-image probabilities
of all folds together give F1, precision, recall, FP and FN at threshold 0.9, and AP.

Deviations from the paper, and choices it leaves open (also stated in the book):

- The paper gives no number of epochs; the ``paper`` profile trains the segmentation network
  for 50 and the classifier for 25 epochs of the alternating sampler (Tabernik et al.'s
  schedule on the same data); ``cpu`` uses fewer steps at a lower resolution. What the
  ``paper`` profile asks of the hardware (images, FLOPs, its floor on one GPU):
  :mod:`defectlib.experiments.cost` and the performance chapter.
- An epoch of the alternating sampler sees every defect-free training image once and as many
  defective ones (repeated).
- Each fold is seeded alone (``seed_everything(seed)`` at its start), so a resumed run gives
  the same numbers as an uninterrupted one.
- Learning rate: the ``paper`` profile keeps the printed 0.01 for every network. The ``cpu``
  profile takes each network's rate from :data:`CPU_LEARNING_RATES`, chosen on KolektorSDD's
  training folds only (``scripts/seg000_validation_check.py``; fold 1 trains, fold 2
  validates): 0.01 for the proposed network and U-Net, 1e-3 for DeepLabv3+, which trains at
  0.01 without diverging but generalises clearly worse (validation AP 0.84 against 0.93).
- Arithmetic: the ``paper`` profile trains and tests in float32. The ``cpu`` profile runs
  DeepLabv3+ and U-Net under bfloat16 autocast (:data:`CPU_AMP`; weights, optimiser and losses
  stay float32), which makes their training steps 1.4-1.6× faster on the study's CPU, and keeps
  the proposed network in float32 (bfloat16 makes it slower there). What that costs in
  accuracy: the performance chapter sets each baseline cell beside its float32 run
  (:func:`defectlib.experiments.budget.precision_cost`).
- Folds come from the spine's manifest (``StratifiedGroupKFold`` grouped by ``kosNN``), not
  from the official split files, which do not match the folder numbers of our copy.
"""

from __future__ import annotations

from functools import partial

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator
from tqdm.auto import tqdm

from ..config import ExperimentConfig
from ..data import DATASETS
from ..data.dataset import SurfaceDataset
from ..data.masks import check_kernel
from ..metrics import image_metrics
from ..results import Run, RunResult
from ..seeding import seed_everything
from .common import CrossValidatedConfig, cross_validate, fold_metrics, one_of
from .common import device as _device

MODELS = ("proposed", "deeplabv3plus", "unet")
DILATIONS = (0, 5, 9, 13, 15)
_KOLEKTOR = {"dataset": "kolektorsdd", "n_folds": 3}

_ModelName = one_of(MODELS, "model")
_DatasetName = one_of(DATASETS, "dataset")

#: Learning rate (both stages) per network in the ``cpu`` profile, chosen on the training
#: folds only (module docstring; the book's design-checks table shows the evidence).
CPU_LEARNING_RATES = {"proposed": 1e-2, "deeplabv3plus": 1e-3, "unet": 1e-2}
#: bfloat16 autocast per network in the ``cpu`` profile: on where it makes training faster
#: on the study's CPU (``defectlib bench --amp`` at 352×128: DeepLabv3+ 0.27 → 0.19 s a step,
#: U-Net 0.16 → 0.10 s), off where it makes it slower (the proposed network: 0.042 → 0.075 s,
#: bfloat16 depthwise convolutions are slow here). On a CPU without bfloat16 instructions all
#: three were 1.8-2.6× slower under it in two bench runs (:mod:`defectlib.precision`): pass
#: ``amp=False`` there.
CPU_AMP = {"proposed": False, "deeplabv3plus": True, "unet": True}


class Seg000Config(CrossValidatedConfig):
    """One cell of seed 000's grid: a model at one annotation dilation, over all folds."""

    EXPERIMENT: ClassVar[str] = "seg000"
    LATE_FIELDS: ClassVar[dict] = {**CrossValidatedConfig.LATE_FIELDS, "amp": False}
    PROFILES: ClassVar[dict] = {
        "smoke": {"dataset": "synthetic", "n_folds": 3, "input_size": [64, 32], "seg_steps": 30,
                  "clf_steps": 20, "lr_seg": 1e-3, "lr_clf": 1e-3, "gallery_scale": 1},
        "cpu": {**_KOLEKTOR, "input_size": [352, 128], "seg_steps": 600, "clf_steps": 300,
                "lr_seg": "per-model", "lr_clf": "per-model", "amp": "per-model", "gallery_scale": 2},
        "paper": {**_KOLEKTOR, "input_size": [1408, 512], "seg_epochs": 50, "clf_epochs": 25,
                  "lr_seg": 1e-2, "lr_clf": 1e-2, "gallery_scale": 8},
    }

    #: Segmentation network: proposed | deeplabv3plus | unet.
    model: _ModelName = "proposed"
    #: Annotation dilation kernel (0 = original masks; the paper: 0, 5, 9, 13, 15).
    dilation: int = 9
    dataset: _DatasetName = "kolektorsdd"
    n_folds: int = Field(default=3, ge=2)
    #: Seed of the folds manifest (the spine's folds); ``seed`` seeds training.
    folds_seed: int = 0
    #: Network input (H, W).
    input_size: list[int]
    #: Training length: steps, or epochs of the alternating sampler (epochs win when set).
    seg_steps: int = 0
    clf_steps: int = 0
    seg_epochs: int | None = None
    clf_epochs: int | None = None
    lr_seg: float
    lr_clf: float
    batch_size: int = Field(default=1, ge=1)
    #: Mixed precision: forward passes under bfloat16 autocast (weights and losses float32).
    amp: bool = False
    threshold: float = 0.9
    #: Gallery images are stored at the input size divided by this.
    gallery_scale: int = Field(default=2, ge=1)
    #: Images per gallery category kept per fold (all errors are kept, up to this many too).
    gallery_size: int = 3
    num_workers: int = 0

    @model_validator(mode="before")
    @classmethod
    def _per_model(cls, data):
        # "per-model" (the cpu profile): the network's value in CPU_LEARNING_RATES / CPU_AMP.
        if isinstance(data, dict):
            model = data.get("model", "proposed")
            for key, table, fallback in (("lr_seg", CPU_LEARNING_RATES, 1e-2),
                                         ("lr_clf", CPU_LEARNING_RATES, 1e-2), ("amp", CPU_AMP, False)):
                if data.get(key) == "per-model":
                    data = {**data, key: table.get(model, fallback)}
        return data

    @field_validator("dilation")
    @classmethod
    def _dilation(cls, value: int) -> int:
        return check_kernel(value)

    def steps(self, stage_epochs: int | None, stage_steps: int, n_negative: int) -> int:
        """Optimiser steps of a stage: epochs × 2 × defect-free images / batch, or steps."""
        if stage_epochs is not None:
            return max(1, stage_epochs * 2 * n_negative // self.batch_size)
        return stage_steps


def _gallery_indices(part: pd.DataFrame, threshold: float, size: int) -> np.ndarray:
    """Rows to keep for the galleries: up to ``size`` of each of TP, FN, TN, FP.

    Errors first come the most confident; correct ones, the least confident (the hardest).
    """
    predicted = part["score"] >= threshold
    positive = part["label"] == 1
    chosen = []
    for mask, hardest_first in (
        (positive & predicted, True),
        (positive & ~predicted, False),
        (~positive & ~predicted, False),
        (~positive & predicted, True),
    ):
        rows = part[mask].sort_values("score", ascending=hardest_first)
        chosen.extend(rows.index[:size])
    return np.array(chosen, dtype=np.int64)


def _train_fold(
    cfg: Seg000Config, table: pd.DataFrame, folds: np.ndarray, fold: int, current: Run, *, progress: bool = True
) -> pd.DataFrame:
    from ..models import DefectClassifier, build_segnet
    from ..training import predict, train_classifier, train_segmentation

    seed_everything(cfg.seed)
    device = _device()
    size = tuple(cfg.input_size)
    train_table, test_table = table[folds != fold], table[folds == fold]
    train_set = SurfaceDataset(train_table, size=size, dilation=cfg.dilation)
    test_set = SurfaceDataset(test_table, size=size, dilation=0)
    n_negative = int((train_table["label"] == 0).sum())

    segnet = build_segnet(cfg.model).to(device)
    classifier = DefectClassifier(in_channels=segnet.feature_channels + 1).to(device)
    common = dict(batch_size=cfg.batch_size, seed=cfg.seed, device=device, num_workers=cfg.num_workers,
                  amp=cfg.amp, progress=progress)
    seg_losses = train_segmentation(
        segnet, train_set, steps=cfg.steps(cfg.seg_epochs, cfg.seg_steps, n_negative), lr=cfg.lr_seg, **common
    )
    clf_losses = train_classifier(
        segnet, classifier, train_set, steps=cfg.steps(cfg.clf_epochs, cfg.clf_steps, n_negative), lr=cfg.lr_clf, **common
    )
    scores, maps = predict(segnet, classifier, test_set, device=device, keep_maps=True, amp=cfg.amp,
                           progress=progress)

    part = test_table[["sample_id", "label", "defect_area"]].reset_index(drop=True)
    part.insert(1, "fold", fold)
    part["score"] = scores["score"].to_numpy()
    part["seg_max"] = scores["seg_max"].to_numpy()

    keep = _gallery_indices(part, cfg.threshold, cfg.gallery_size)
    small = (size[0] // cfg.gallery_scale, size[1] // cfg.gallery_scale)
    images = np.stack([_small_image(test_set, int(i), small) for i in keep]) if len(keep) else np.zeros((0, *small), np.uint8)
    current.save_artifact(
        f"fold{fold}",
        seg_losses=np.asarray(seg_losses, np.float32),
        clf_losses=np.asarray(clf_losses, np.float32),
        gallery_rows=keep,
        gallery_ids=part.loc[keep, "sample_id"].to_numpy().astype(str),
        gallery_images=images,
        gallery_maps=np.stack([maps[int(i)] for i in keep]) if len(keep) else np.zeros((0, 1, 1), np.float16),
        pretrained=np.array(str(getattr(segnet, "pretrained", None))),
    )
    return part


def _small_image(dataset: SurfaceDataset, index: int, size: tuple[int, int]) -> np.ndarray:
    import cv2

    image, _ = dataset.arrays(index)
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _metrics(samples: pd.DataFrame, threshold: float) -> dict:
    """Image metrics over all folds and per fold, and the AP of the segmentation maximum."""
    metrics = fold_metrics(
        samples, lambda s: image_metrics(s["label"].to_numpy(), s["score"].to_numpy(), threshold=threshold)
    )
    metrics["seg_max_ap"] = image_metrics(samples["label"].to_numpy(), samples["seg_max"].to_numpy(), threshold=0.5)["ap"]
    return metrics


def cell_metrics(cfg: Seg000Config, samples: pd.DataFrame) -> dict:
    """A cell's metrics from its test samples (all folds together, and per fold)."""
    return _metrics(samples, cfg.threshold)


def run(cfg: Seg000Config, *, progress: bool = True) -> RunResult:
    """Train and test one grid cell over all folds (or read it from the results cache)."""
    return cross_validate(cfg, _train_fold, partial(cell_metrics, cfg),
                          desc=f"{cfg.model} k={cfg.dilation}", progress=progress)


def grid_configs(profile: str, *, models=MODELS, dilations=DILATIONS, **overrides) -> list[Seg000Config]:
    """The configs of the grid ``models × dilations`` under one profile."""
    return [
        Seg000Config.from_profile(profile, model=m, dilation=k, **overrides)
        for m in models
        for k in dilations
    ]


def run_grid(configs: list[Seg000Config], *, progress: bool = True) -> list[RunResult]:
    """Run (or read) every cell; finished cells are skipped, unfinished ones continue."""
    return [run(cfg, progress=progress) for cfg in tqdm(configs, desc="grid", disable=not progress)]


def grid_table(results: list[RunResult]) -> pd.DataFrame:
    """One row per cell: model, dilation, F1, precision, recall, FP, FN, AP and wall time."""
    rows = []
    for r in results:
        cfg, m = r.provenance["config"], r.metrics
        rows.append({
            "model": cfg["model"], "dilation": cfg["dilation"],
            "f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
            "fp": m["fp"], "fn": m["fn"], "ap": m["ap"],
            "wall_time_min": r.provenance["wall_time_s"] / 60,
        })
    return pd.DataFrame(rows)


class Seg000GridConfig(ExperimentConfig):
    """The annotation sweep: which models and dilations, under which profile."""

    EXPERIMENT: ClassVar[str] = "seg000-grid"
    PROFILES: ClassVar[dict] = {"smoke": {}, "cpu": {}, "paper": {}}

    models: list[str] = list(MODELS)
    dilations: list[int] = list(DILATIONS)
    #: bfloat16 autocast for every cell (None: the profile's; False on a CPU without
    #: bfloat16 instructions, where it is slow: :mod:`defectlib.precision`).
    amp: bool | None = None

    def cells(self) -> list[Seg000Config]:
        return grid_configs(self.profile, models=self.models, dilations=self.dilations, seed=self.seed,
                            amp=self.amp)


class Seg000ArchitectureConfig(ExperimentConfig):
    """The architecture chapter: at which input size shapes, parameters and FLOPs are shown."""

    EXPERIMENT: ClassVar[str] = "seg000-architecture"
    PROFILES: ClassVar[dict] = {
        "smoke": {"table_size": [128, 64]},
        "cpu": {"table_size": [1408, 512]},
        "paper": {"table_size": [1408, 512]},
    }

    #: Input (H, W) of the encoder table and the FLOP counts (the paper: 1408×512).
    table_size: list[int]
    bottleneck_channels: list[int] = [16, 24, 48, 96]


GALLERY_CATEGORIES = {
    "true positives": (1, True),
    "false negatives": (1, False),
    "true negatives": (0, False),
    "false positives": (0, True),
}


def gallery(result: RunResult, category: str, *, threshold: float | None = None):
    """Stored gallery images of one category: ``(entries, images, maps)``.

    ``category`` is a key of :data:`GALLERY_CATEGORIES`; images come from the run's
    artifacts, so the gallery renders without the dataset.
    """
    label, predicted_defective = GALLERY_CATEGORIES[category]
    threshold = result.provenance["config"]["threshold"] if threshold is None else threshold
    entries, images, maps = [], [], []
    for fold in sorted(result.samples["fold"].unique()):
        arrays = result.artifact(f"fold{fold}")
        part = result.samples[result.samples["fold"] == fold].reset_index(drop=True)
        for position, row in enumerate(arrays["gallery_rows"]):
            entry = part.iloc[int(row)]
            if entry["label"] == label and (entry["score"] >= threshold) == predicted_defective:
                entries.append(entry)
                images.append(arrays["gallery_images"][position])
                maps.append(arrays["gallery_maps"][position])
    return pd.DataFrame(entries).reset_index(drop=True), images, maps


def design_checks() -> pd.DataFrame:
    """The design checks of ``scripts/seg000_validation_check.py``, one row per model and variant.

    Read from ``<results>/seg000-checks/<model>.json``; an empty table when none was run.
    Every row comes from KolektorSDD's training folds only (fold 1 trains, fold 2 validates).
    """
    import json

    from ..paths import results_root

    rows = []
    for path in sorted((results_root() / "seg000-checks").glob("*.json")):
        record = json.loads(path.read_text())
        model = record["config"]["model"]
        for row in record["rows"]:
            if model != "proposed":  # the head-initialisation variant concerns the proposed net only
                row = {**row, "variant": row["variant"].replace("small-head, ", "")}
            rows.append({"model": model, **row,
                         "commit": record["git"].get("commit", "")[:10]})
    columns = ["model", "variant", "first_seg_loss", "train_ap", "train_seg_max_ap", "val_ap",
               "val_seg_max_ap", "seconds", "commit"]
    return pd.DataFrame(rows, columns=columns)


def training_curves(result: RunResult) -> dict[int, dict[str, np.ndarray]]:
    """The per-fold loss curves stored with a run."""
    return {int(f): result.artifact(f"fold{f}") for f in sorted(result.samples["fold"].unique())}
