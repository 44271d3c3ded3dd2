"""Seed 000: lightweight segmentation + classification on KolektorSDD, and its baselines.

One *cell* of the study's grid is one model (``proposed``, ``deeplabv3plus``, ``unet``) at one
annotation dilation and one training seed, trained and tested over the 3 folds of the folds
manifest. For every fold: the segmentation network trains on the dilated masks, is frozen, the
classification network trains on top, and every test image gets a probability. The per-image
probabilities of all folds together give F1, precision, recall, FP and FN at the paper's
threshold 0.9, and AP; the maximum of the segmentation map gives a second decision (at 0.5)
and its own AP.

Deviations from the paper, and choices it leaves open (also stated in the book):

- **Validation**: each fold holds out a fifth of its training parts (grouped by commutator,
  stratified) as validation images, scored every ``eval_every`` steps; the recipe below was
  chosen on them, never on a test fold.
- **Schedule**: Adam with a linear warm-up over the first 10 % of the steps, then cosine decay
  to zero (:class:`~defectlib.training.loop.Schedule`), where the paper prints a constant
  ``lr = 0.01``. At a constant 0.01 the proposed network's validation TNR collapsed late in
  training when the loss spiked, and the classifier saturated or collapsed in a fifth of the
  folds; the decay removes both.
- **Learning rates** (the peak of the schedule): segmentation 0.01 (the printed rate) for the
  proposed network and U-Net, 1e-3 for DeepLabv3+, which at 0.01 generalises clearly worse;
  the classifier 1e-3 for all three, since at 0.01 it collapsed to a constant score.
- **A stalled classifier is trained again** from new weights, at most twice
  (:func:`~defectlib.training.loop.stalled`): when the mean training loss of its last tenth
  of steps stays above half of ln 2 (ln 2 is a constant guess's loss). The rule reads the
  training loss only, and a classifier that trained normally is left exactly as it was; if
  every attempt stalls, the one whose training loss ended lowest is kept. A fold that was
  trained again records ``classifier_restarts`` in its checks and the curves of the attempts
  not kept in its artifact.
- **Length**: the paper gives no number of epochs. The ``converged`` profile trains the
  proposed network's segmentation for 1,500 steps, the baselines' for 2,000, and every
  classifier for 1,500 (one image a step); the validation curves stored with every fold show
  the plateau. (A first run of the proposed network with 3,000 segmentation steps had its
  validation AP flat from about step 750 on, on both folds it finished; it was stopped and
  the length halved.) The ``paper`` profile trains 50 and 25 epochs of the alternating sampler
  (Tabernik et al.'s schedule on the same data).
- **Resolution**: ``converged`` runs every network at 352×128, a quarter of the paper's side
  (the paper: 1408×512); the proposed network is also run at 704×256 and at the paper's
  1408×512 (:data:`RESOLUTIONS`), with the same recipe, where KolektorSDD's thin cracks are
  better resolved. The baselines, several times as costly a step, are also run at 704×256 at
  the spread study's dilations (:data:`BASELINE_RESOLUTIONS`): DeepLabv3+'s coarsest features
  (stride 16) are 22×8 at 352×128.
- **Initialisation**: every network trains from scratch (no pretrained weights can be fetched
  here; the paper's DeepLabv3+ was ImageNet-pretrained).
- An epoch of the alternating sampler sees every defect-free training image once and as many
  defective ones (repeated).
- Each fold is seeded alone (``seed_everything(seed)`` at its start) and checkpointed every few
  minutes, so a resumed run gives the same numbers as an uninterrupted one.
- Folds come from the spine's manifest (``StratifiedGroupKFold`` grouped by ``kosNN``), not
  from the official split files, which do not match the folder numbers of our copy.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from ..config import ExperimentConfig
from ..data import DATASETS
from ..data.dataset import SurfaceDataset
from ..data.masks import check_kernel
from ..metrics import image_metrics
from ..results import Run, RunResult
from .common import (CONSTANT_STD, CrossValidatedConfig, FoldData, FoldOutcome, constant_output, cross_validate,
                     fold_metrics, one_of, run_cells)
from .common import device as _device
from .common import restarted_folds as _restarted_folds

MODELS = ("proposed", "deeplabv3plus", "unet")
DILATIONS = (0, 5, 9, 13, 15)
#: Dilations of the spread study (every model, more training seeds).
SEED_DILATIONS = (0, 9)
#: Input sizes (H, W) of the proposed network's resolution study (``converged`` profile): half
#: the paper's side, and the paper's own.
RESOLUTIONS = [[704, 256], [1408, 512]]
#: Input sizes (H, W) at which the baselines are also run, at the spread study's dilations
#: (``converged`` profile): the first size of :data:`RESOLUTIONS`.
BASELINE_RESOLUTIONS = [[704, 256]]
_KOLEKTOR = {"dataset": "kolektorsdd", "n_folds": 3}

_ModelName = one_of(MODELS, "model")
_DatasetName = one_of(DATASETS, "dataset")

#: Peak learning rate of the segmentation stage per network in the ``converged`` profile.
SEG_LEARNING_RATES = {"proposed": 1e-2, "deeplabv3plus": 1e-3, "unet": 1e-2}
#: Segmentation steps per network in the ``converged`` profile.
SEG_STEPS = {"proposed": 1500, "deeplabv3plus": 2000, "unet": 2000}


class Seg000Config(CrossValidatedConfig):
    """One cell of seed 000's grid: a model at one annotation dilation, over all folds.

    The ``converged`` profile's recipe and where it departs from the paper are listed in the
    module notes (:mod:`defectlib.experiments.seg000`).
    """

    EXPERIMENT: ClassVar[str] = "seg000"
    PROFILES: ClassVar[dict] = {
        "smoke": {"dataset": "synthetic", "n_folds": 3, "input_size": [64, 32], "seg_steps": 16,
                  "clf_steps": 10, "lr_seg": 1e-3, "lr_clf": 1e-3, "gallery_scale": 1, "eval_every": 8},
        "converged": {**_KOLEKTOR, "input_size": [352, 128], "seg_steps": "per-model", "clf_steps": 1500,
                      "lr_seg": "per-model", "lr_clf": 1e-3, "gallery_scale": 2, "eval_every": 250},
        "paper": {**_KOLEKTOR, "input_size": [1408, 512], "seg_epochs": 50, "clf_epochs": 25,
                  "lr_seg": 1e-2, "lr_clf": 1e-3, "gallery_scale": 8, "eval_every": 1000},
    }

    #: Segmentation network: proposed | deeplabv3plus | unet.
    model: _ModelName = "proposed"
    #: Annotation dilation kernel (0 = original masks; the paper: 0, 5, 9, 13, 15).
    dilation: int = 9
    dataset: _DatasetName = "kolektorsdd"
    n_folds: int = Field(default=3, ge=2)
    #: Seed of the folds manifest (the spine's folds); ``seed`` seeds training.
    folds_seed: int = Field(default=0, ge=0)
    #: Network input (H, W).
    input_size: list[int]
    #: Training length: steps, or epochs of the alternating sampler (epochs win when set).
    seg_steps: int = Field(default=0, ge=0)
    clf_steps: int = Field(default=0, ge=0)
    seg_epochs: int | None = None
    clf_epochs: int | None = None
    #: Peak learning rates of the two stages (:class:`~defectlib.training.loop.Schedule`).
    lr_seg: float = Field(gt=0)
    lr_clf: float = Field(gt=0)
    #: Share of each stage's steps spent warming the learning rate up.
    warmup: float = Field(default=0.1, ge=0, lt=1)
    batch_size: int = Field(default=1, ge=1)
    threshold: float = Field(default=0.9, gt=0, lt=1)
    #: Threshold of the second decision, on the segmentation map's maximum.
    map_threshold: float = Field(default=0.5, gt=0, lt=1)
    #: Gallery images are stored at the input size divided by this.
    gallery_scale: int = Field(default=2, ge=1)
    #: Images per gallery category kept per fold (all errors are kept, up to this many too).
    gallery_size: int = Field(default=3, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _per_model(cls, data):
        # "per-model" (the converged profile): the network's value in SEG_LEARNING_RATES / SEG_STEPS.
        if isinstance(data, dict):
            model = data.get("model", "proposed")
            for key, table in (("lr_seg", SEG_LEARNING_RATES), ("seg_steps", SEG_STEPS)):
                if data.get(key) == "per-model":
                    data = {**data, key: table.get(model)}
        return data

    @field_validator("dilation")
    @classmethod
    def _dilation(cls, value: int) -> int:
        return check_kernel(value)

    @model_validator(mode="after")
    def _lengths(self):
        if (self.seg_epochs is None and self.seg_steps < 1) or (self.clf_epochs is None and self.clf_steps < 1):
            raise ValueError("each stage needs steps >= 1 (seg_steps, clf_steps) or epochs (seg_epochs, clf_epochs)")
        return self

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


def _train_fold(cfg: Seg000Config, data: FoldData, current: Run, *, checkpoints: Path,
                progress: bool = True) -> FoldOutcome:
    from ..models import DefectClassifier, build_segnet
    from ..training import Schedule, predict, train_two_stages

    device = _device()
    size = tuple(cfg.input_size)
    train_set = SurfaceDataset(data.train, size=size, dilation=cfg.dilation)
    val_set = SurfaceDataset(data.val, size=size, dilation=0)
    test_set = SurfaceDataset(data.test, size=size, dilation=0)
    n_negative = int((data.train["label"] == 0).sum())

    segnet = build_segnet(cfg.model).to(device)
    classifier = DefectClassifier(in_channels=segnet.feature_channels + 1).to(device)
    stages = train_two_stages(
        segnet, classifier, train_set, val_set,
        seg_schedule=Schedule(cfg.steps(cfg.seg_epochs, cfg.seg_steps, n_negative), cfg.lr_seg, warmup=cfg.warmup),
        clf_schedule=Schedule(cfg.steps(cfg.clf_epochs, cfg.clf_steps, n_negative), cfg.lr_clf, warmup=cfg.warmup),
        threshold=cfg.threshold, map_threshold=cfg.map_threshold, seed=cfg.seed, checkpoints=checkpoints,
        batch_size=cfg.batch_size, device=device, eval_every=cfg.eval_every, progress=progress)
    seg, clf = stages.seg, stages.clf
    scores, maps = predict(segnet, classifier, test_set, device=device, keep_maps=True, progress=progress)

    part = data.test[["sample_id", "label", "defect_area"]].reset_index(drop=True)
    part.insert(1, "fold", data.fold)
    part["score"] = scores["score"].to_numpy()
    part["seg_max"] = scores["seg_max"].to_numpy()

    keep = _gallery_indices(part, cfg.threshold, cfg.gallery_size)
    small = (size[0] // cfg.gallery_scale, size[1] // cfg.gallery_scale)
    images = np.stack([_small_image(test_set, int(i), small) for i in keep]) if len(keep) else np.zeros((0, *small), np.uint8)
    current.save_artifact(
        f"fold{data.fold}",
        **seg.arrays("seg"),
        **clf.arrays("clf"),
        **{k: v for i, h in enumerate(stages.stalled_clf) for k, v in h.arrays(f"clf_stalled{i}").items()},
        gallery_rows=keep,
        gallery_ids=part.loc[keep, "sample_id"].to_numpy().astype(str),
        gallery_images=images,
        gallery_maps=np.stack([maps[int(i)] for i in keep]) if len(keep) else np.zeros((0, 1, 1), np.float16),
        pretrained=np.array(str(getattr(segnet, "pretrained", None))),
    )
    final_val = clf.evals[-1]
    checks = {"constant_output": constant_output(part["score"]) or final_val["std"] < CONSTANT_STD,
              "test_score_std": float(part["score"].std()), "val_score_std": final_val["std"],
              "val_ap": final_val["ap"], "val_seg_max_ap": seg.evals[-1]["ap"]}
    if stages.stalled_clf:  # absent from folds whose classifier trained at the first attempt
        checks["classifier_restarts"] = len(stages.stalled_clf)
    return FoldOutcome(part=part, seconds=stages.seconds, checks=checks)


def _small_image(dataset: SurfaceDataset, index: int, size: tuple[int, int]) -> np.ndarray:
    import cv2

    image, _ = dataset.arrays(index)
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _metrics(samples: pd.DataFrame, threshold: float, map_threshold: float = 0.5) -> dict:
    """Image metrics over all folds and per fold at ``threshold``, and the decision on the
    segmentation map's maximum at ``map_threshold`` with its AP."""
    metrics = fold_metrics(
        samples, lambda s: image_metrics(s["label"].to_numpy(), s["score"].to_numpy(), threshold=threshold)
    )
    map_decision = image_metrics(samples["label"].to_numpy(), samples["seg_max"].to_numpy(), threshold=map_threshold)
    metrics["seg_max_ap"] = map_decision["ap"]
    metrics["map_decision"] = {k: map_decision[k] for k in ("fp", "fn", "f1", "precision", "recall")}
    return metrics


def cell_metrics(cfg: Seg000Config, samples: pd.DataFrame) -> dict:
    """A cell's metrics from its test samples (all folds together, and per fold)."""
    return _metrics(samples, cfg.threshold, cfg.map_threshold)


def run(cfg: Seg000Config, *, progress: bool = True) -> RunResult:
    """Train and test one grid cell over all folds (or read it from the results cache)."""
    return cross_validate(cfg, _train_fold, partial(cell_metrics, cfg),
                          desc=f"{cfg.model} k={cfg.dilation}", progress=progress)


def grid_configs(profile: str, *, models=MODELS, dilations=DILATIONS, seeds=(0,), **overrides) -> list[Seg000Config]:
    """The configs of the grid ``models × dilations × seeds`` under one profile."""
    return [
        Seg000Config.from_profile(profile, model=m, dilation=k, seed=seed, **overrides)
        for seed in seeds
        for m in models
        for k in dilations
    ]


def run_grid(configs: list[Seg000Config], *, compute: bool = True, progress: bool = True) -> list[RunResult]:
    """The finished runs of ``configs`` (:func:`~defectlib.experiments.common.run_cells` with
    this experiment's :func:`run`)."""
    return run_cells(configs, run, compute=compute, progress=progress)


#: The columns of :func:`grid_table` (an empty table has them too).
GRID_COLUMNS = ["model", "input", "dilation", "seed", "f1", "precision", "recall", "fp", "fn", "ap",
                "map_fp", "map_fn", "map_ap", "failed_folds", "cpu_hours"]


def grid_table(results: list[RunResult]) -> pd.DataFrame:
    """One row per cell: model, input size, dilation, seed, F1, precision, recall, FP, FN, AP at
    the classifier's threshold, FP, FN and AP of the map-maximum decision, failed folds, and
    the compute time."""
    rows = []
    for r in results:
        cfg, m = r.provenance["config"], r.metrics
        rows.append({
            "model": cfg["model"], "input": "×".join(map(str, cfg["input_size"])), "dilation": cfg["dilation"],
            "seed": cfg["seed"], "f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
            "fp": m["fp"], "fn": m["fn"], "ap": m["ap"],
            "map_fp": m["map_decision"]["fp"], "map_fn": m["map_decision"]["fn"], "map_ap": m["seg_max_ap"],
            "failed_folds": len(m.get("failed_folds", [])),
            "cpu_hours": r.provenance["wall_time_s"] / 3600,
        })
    return pd.DataFrame(rows, columns=GRID_COLUMNS)


def fold_errors(results: list[RunResult]) -> pd.DataFrame:
    """FP + FN at the threshold per cell and test fold: model, input, dilation, seed, fold, errors."""
    rows = []
    for r in results:
        cfg = r.provenance["config"]
        for fold, m in sorted(r.metrics["per_fold"].items(), key=lambda kv: int(kv[0])):
            rows.append({"model": cfg["model"], "input": "×".join(map(str, cfg["input_size"])),
                         "dilation": cfg["dilation"], "seed": cfg["seed"], "fold": int(fold),
                         "errors": int(m["fp"] + m["fn"]), "ap": m["ap"]})
    return pd.DataFrame(rows, columns=["model", "input", "dilation", "seed", "fold", "errors", "ap"])


#: The columns of :func:`image_errors`.
IMAGE_ERROR_COLUMNS = ["sample_id", "fold", "label", "defect_area", "runs", "wrong", "map_wrong", "wrong_share",
                       "map_wrong_share", "median_score", "median_seg_max"]


def image_errors(results: list[RunResult]) -> pd.DataFrame:
    """How often each test image is decided wrongly, over ``results`` (any mix of cells).

    One row per test image: its fold, label and defect area; ``runs`` (the runs that scored
    it), ``wrong`` (those whose classifier decision at the run's threshold was wrong),
    ``map_wrong`` (the same for the map-maximum decision at the run's ``map_threshold``), the
    two as shares of ``runs``, and the median classifier score and map maximum. Sorted by
    ``wrong``, then ``map_wrong``, most first.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> samples = pd.DataFrame({"sample_id": ["a", "b", "c"], "fold": [0, 0, 1], "label": [1, 0, 1],
    ...                         "defect_area": [10, 0, 30], "score": [0.2, 0.95, 0.99], "seg_max": [0.8, 0.1, 1.0]})
    >>> run = SimpleNamespace(samples=samples, provenance={"config": {"threshold": 0.9, "map_threshold": 0.5}})
    >>> image_errors([run, run])[["sample_id", "runs", "wrong", "map_wrong"]].values.tolist()
    [['a', 2, 2, 0], ['b', 2, 2, 0], ['c', 2, 0, 0]]
    """
    frames = []
    for r in results:
        cfg = r.provenance["config"]
        s = r.samples
        positive = s["label"] == 1
        frames.append(s[["sample_id", "fold", "label", "defect_area", "score", "seg_max"]].assign(
            wrong=((s["score"] >= cfg["threshold"]) != positive).astype(int),
            map_wrong=((s["seg_max"] >= cfg.get("map_threshold", 0.5)) != positive).astype(int)))
    if not frames:
        return pd.DataFrame(columns=IMAGE_ERROR_COLUMNS)
    every = pd.concat(frames, ignore_index=True)
    table = every.groupby(["sample_id", "fold", "label", "defect_area"], sort=False).agg(
        runs=("wrong", "size"), wrong=("wrong", "sum"), map_wrong=("map_wrong", "sum"),
        median_score=("score", "median"), median_seg_max=("seg_max", "median")).reset_index()
    table["wrong_share"] = table["wrong"] / table["runs"]
    table["map_wrong_share"] = table["map_wrong"] / table["runs"]
    table = table.sort_values(["wrong", "map_wrong"], ascending=False, kind="stable").reset_index(drop=True)
    return table[IMAGE_ERROR_COLUMNS]


def stored_views(results: list[RunResult], sample_ids):
    """The stored gallery views of ``sample_ids``: ``(entries, images, maps)``.

    For each id, the first run of ``results`` whose gallery artifacts hold that image gives its
    thumbnail and predicted map (so the views render without the dataset); ``entries`` has the
    image's row of that run's samples. Ids no run kept are left out.
    """
    wanted = list(dict.fromkeys(sample_ids))
    found: dict[str, tuple] = {}
    for r in results:
        if len(found) == len(wanted):
            break
        for fold in sorted(r.samples["fold"].unique()):
            missing = [i for i in wanted if i not in found]
            if not missing:
                break
            arrays = r.artifact(f"fold{fold}")
            ids = [str(i) for i in arrays.get("gallery_ids", [])]
            part = r.samples[r.samples["fold"] == fold].reset_index(drop=True)
            for position, sample_id in enumerate(ids):
                if sample_id in missing and sample_id not in found:
                    entry = part.iloc[int(arrays["gallery_rows"][position])]
                    found[sample_id] = (entry, arrays["gallery_images"][position], arrays["gallery_maps"][position])
    kept = [found[i] for i in wanted if i in found]
    return (pd.DataFrame([k[0] for k in kept]).reset_index(drop=True), [k[1] for k in kept], [k[2] for k in kept])


def defect_crops(sample_ids, *, dataset: str = "kolektorsdd", margin: int = 48) -> list[dict[str, np.ndarray]]:
    """Crops around the annotated defect of each defective image in ``sample_ids``, at native
    resolution: ``{"image", "masks", "dilations", "sample_id"}`` as
    :func:`~defectlib.experiments.data_chapter.dilation_example` gives them (the original
    annotation only). Defect-free ids are skipped. Reads the dataset (``$DEFECTLIB_DATA``);
    raises :class:`~defectlib.errors.DataError` when it is missing.
    """
    from ..data import load_samples
    from .data_chapter import dilation_example

    table = load_samples(dataset).set_index("sample_id", drop=False)
    unknown = [i for i in sample_ids if i not in table.index]
    if unknown:
        raise ValueError(f"not in {dataset}: {', '.join(map(str, unknown))}")
    return [dilation_example(table.loc[i], [0], margin) for i in sample_ids if table.loc[i, "label"] == 1]


def restarted_folds(results: list[RunResult], name) -> pd.DataFrame:
    """The folds whose classifier stalled and was trained again
    (:func:`~defectlib.training.loop.stalled`): :func:`~.common.restarted_folds` of the
    ``classifier_restarts`` check, with the classifier's (``clf``) curves."""
    return _restarted_folds(results, name, check="classifier_restarts", prefix="clf")


def spread_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per model, input and dilation: FP + FN and AP over the training seeds (a :func:`grid_table`).

    Columns ``seeds``, ``errors_mean``, ``errors_min``, ``errors_max``, ``ap_mean``, ``ap_min``,
    ``ap_max``; only groups with two seeds or more.
    """
    t = table.assign(errors=table["fp"] + table["fn"])
    groups = t.groupby(["model", "input", "dilation"], sort=False)
    out = groups.agg(seeds=("seed", "nunique"), errors_mean=("errors", "mean"), errors_min=("errors", "min"),
                     errors_max=("errors", "max"), ap_mean=("ap", "mean"), ap_min=("ap", "min"), ap_max=("ap", "max"))
    return out[out["seeds"] >= 2].reset_index()


def separated(spread: pd.DataFrame, *, by: str = "model") -> pd.DataFrame:
    """Which pairs of a :func:`spread_table` differ by more than the seeds move them.

    Pairs are compared within the same input and the other grouping column (``by="model"``:
    two models at one dilation; ``by="dilation"``: two dilations of one model). A difference
    counts as beyond the spread when the ranges over seeds do not overlap (for FP + FN, and
    for AP separately).

    Examples
    --------
    >>> s = pd.DataFrame({"model": ["a", "b"], "input": ["x", "x"], "dilation": [9, 9], "seeds": [3, 3],
    ...                   "errors_mean": [2.0, 9.0], "errors_min": [1, 7], "errors_max": [3, 12],
    ...                   "ap_mean": [0.99, 0.97], "ap_min": [0.98, 0.95], "ap_max": [1.0, 0.985]})
    >>> separated(s)[["first", "second", "errors_separated", "ap_separated"]].values.tolist()
    [['a', 'b', True, False]]
    """
    other = "dilation" if by == "model" else "model"
    rows = []
    for (_, _), group in spread.groupby(["input", other], sort=False):
        items = list(group.itertuples(index=False))
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                rows.append({"input": a.input, other: getattr(a, other), "first": getattr(a, by),
                             "second": getattr(b, by), "errors": f"{a.errors_mean:.1f} vs {b.errors_mean:.1f}",
                             "errors_separated": bool(a.errors_max < b.errors_min or b.errors_max < a.errors_min),
                             "ap": f"{a.ap_mean:.3f} vs {b.ap_mean:.3f}",
                             "ap_separated": bool(a.ap_max < b.ap_min or b.ap_max < a.ap_min)})
    return pd.DataFrame(rows, columns=["input", other, "first", "second", "errors", "errors_separated", "ap",
                                       "ap_separated"])


class Seg000GridConfig(ExperimentConfig):
    """The annotation sweep: which models and dilations, under which profile, and the spread
    (extra seeds) and resolution studies."""

    EXPERIMENT: ClassVar[str] = "seg000-grid"
    PROFILES: ClassVar[dict] = {
        "smoke": {"compute": True, "resolutions": [[128, 64]], "dilations": [0, 9], "extra_seeds": [1], "seed_dilations": [0]},
        "converged": {"compute": False, "resolutions": RESOLUTIONS, "baseline_resolutions": BASELINE_RESOLUTIONS,
                      "extra_seeds": [1, 2]},
        "paper": {"compute": True, "resolutions": [], "extra_seeds": []},
    }

    models: list[str] = list(MODELS)
    dilations: list[int] = list(DILATIONS)
    #: Training seeds of the spread study, beside ``seed`` (at ``seed_dilations``).
    extra_seeds: list[int] = []
    #: Dilations of the spread study (those of ``dilations`` also listed here).
    seed_dilations: list[int] = list(SEED_DILATIONS)
    #: Train the cells missing from the results cache (False: show the cached ones and list
    #: the rest as pending; ``defectlib grid`` computes them).
    compute: bool = True
    #: Input sizes (H, W) of the proposed network's resolution study, beside the main grid's
    #: (empty: no such study).
    resolutions: list[list[int]] = []
    #: Input sizes (H, W) at which the baselines (every model but the proposed one) are also
    #: run, at ``seed_dilations`` (empty: none).
    baseline_resolutions: list[list[int]] = []

    def cells(self) -> list[Seg000Config]:
        """The main grid: every model at every dilation, training seed ``seed``."""
        return grid_configs(self.profile, models=self.models, dilations=self.dilations, seeds=(self.seed,))

    def seed_cells(self) -> list[Seg000Config]:
        """The spread study: every model at ``seed_dilations`` with ``extra_seeds``."""
        return grid_configs(self.profile, models=self.models, dilations=[k for k in self.seed_dilations if k in self.dilations],
                            seeds=self.extra_seeds)

    def resolution_cells(self) -> list[Seg000Config]:
        """The proposed network at every size of ``resolutions`` and every dilation, size by size."""
        if "proposed" not in self.models:
            return []
        return [cfg for size in self.resolutions
                for cfg in grid_configs(self.profile, models=["proposed"], dilations=self.dilations,
                                        seeds=(self.seed,), input_size=list(size))]

    def baseline_resolution_cells(self) -> list[Seg000Config]:
        """The baselines at every size of ``baseline_resolutions``, at ``seed_dilations``, dilation
        by dilation (every baseline at the first dilation, then at the next)."""
        baselines = [m for m in self.models if m != "proposed"]
        dilations = [k for k in self.seed_dilations if k in self.dilations]
        return [cfg for size in self.baseline_resolutions for k in dilations
                for cfg in grid_configs(self.profile, models=baselines, dilations=[k], seeds=(self.seed,),
                                        input_size=list(size))]


class Seg000ArchitectureConfig(ExperimentConfig):
    """The architecture chapter: at which input size shapes, parameters and FLOPs are shown."""

    EXPERIMENT: ClassVar[str] = "seg000-architecture"
    PROFILES: ClassVar[dict] = {
        "smoke": {"table_size": [128, 64]},
        "converged": {"table_size": [1408, 512]},
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


def training_curves(result: RunResult) -> dict[int, dict[str, np.ndarray]]:
    """The per-fold loss curves stored with a run."""
    return {int(f): result.artifact(f"fold{f}") for f in sorted(result.samples["fold"].unique())}
