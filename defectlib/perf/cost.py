"""What a profile of the study asks of the hardware: images and floating-point operations (issue 6).

For every cell the study trains under a profile (:func:`~defectlib.experiments.budget.study_cells`:
the three grids and the budget checks) :func:`workloads` counts, summed over the cell's test
folds, the images its networks process

* ``trained``: through a training step of the whole network (forward and backward);
* ``head``: seed 000's second stage, through the frozen segmentation network (forward only)
  and the classification network on top of it (forward and backward);
* ``tested``: through the network at test time (forward only);

and the floating-point operations that takes, from each network's forward FLOPs per image at
the cell's input size (torch's flop counter, as in :mod:`defectlib.bench`; a multiply-add
counts as 2, and the network is built on the ``meta`` device, so counting costs no arithmetic).
A training step counts as 3× its forward pass (forward, gradient of the activations, gradient
of the weights), the usual estimate and the benchmark's. The counts are estimates in three
ways:

1. the 3× rule (the first convolution needs no input gradient; normalisation and activations
   are not counted);
2. seed 004's improved network trains its local branch on a crop of half each side; it is
   counted at the whole input (an upper bound);
3. data loading, augmentation and the optimiser's update are not counted.

torch's flop counter is not used for the backward pass itself: it counts a grouped (depthwise)
convolution's backward as if the convolution were dense (measured here: the backward of a 3×3
depthwise convolution over 64 channels at 65× its forward), which would inflate the study's
depthwise networks several-fold.

:func:`cost_table` sets the counts of each grid beside the recorded wall time of its cells in the
results cache: the achieved rate of the study's real runs, data loading and all. :func:`projection`
carries it over to another profile (the ``paper`` profile on this machine), and gives the time
a device would need at its peak arithmetic rate (:data:`~defectlib.experiments.references.GPU_PEAKS`):
a floor no implementation can beat.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd
from torch import nn

from ..models.counting import flops_per_image
from .budget import recorded, study_cells
from .common import cached_result, cell_folds

__all__ = ["IMAGE_COUNTS", "NETWORKS", "cell_images", "network_flops", "workloads", "cost_table", "projection"]


def _seg000_networks(cfg) -> tuple[nn.Module, nn.Module]:
    """Seed 000: the segmentation network, and it with the classification network on top."""
    from ..bench import BENCH_MODELS

    whole = BENCH_MODELS[cfg.model].build()[0]  # segmentation network + classifier, as predicted
    return whole, whole.segnet


def _rec004_networks(cfg) -> tuple[nn.Module, None]:
    from ..models.recognition import RECOGNITION_MODELS

    return RECOGNITION_MODELS[cfg.method](find_weights=False), None


def _seg004_networks(cfg) -> tuple[nn.Module, None]:
    from ..models.seg004 import build_seg004

    return build_seg004(cfg.model, branch=cfg.branch, aspp=cfg.aspp, find_weights=False), None


#: Per experiment: the networks of a cell, ``(whole, backbone)``. ``whole`` is what a test image
#: goes through; ``backbone`` (seed 000 only) is the part trained in the first stage and frozen in
#: the second, where only the rest (the classification network) trains.
NETWORKS: dict[str, Callable] = {"seg000": _seg000_networks, "rec004": _rec004_networks,
                                 "seg004": _seg004_networks}


def _network_key(cfg) -> tuple:
    """What decides a cell's networks: the experiment and its network fields."""
    fields = ("model", "method", "branch", "aspp")
    return (cfg.EXPERIMENT, *((f, getattr(cfg, f)) for f in fields if hasattr(cfg, f)))


#: Forward FLOPs already counted, by (network key, input size): a grid repeats its networks.
_COUNTED: dict[tuple, tuple[int, int]] = {}


def network_flops(cfg) -> dict[str, int]:
    """Forward FLOPs per image of a cell's networks at its input size.

    ``forward``: the whole network a test image goes through; ``backbone``: the part seed 000's
    first stage trains (the segmentation network; for the other experiments the whole network).

    Examples
    --------
    >>> from defectlib.experiments.seg000 import Seg000Config
    >>> f = network_flops(Seg000Config.from_profile("smoke", model="proposed"))
    >>> 0 < f["backbone"] < f["forward"]
    True
    """
    size = tuple(int(v) for v in cfg.input_size)
    key = (_network_key(cfg), size)
    if key not in _COUNTED:
        whole, backbone = NETWORKS[cfg.EXPERIMENT](cfg)
        total = flops_per_image(whole.to("meta"), size)
        part = flops_per_image(backbone.to("meta"), size) if backbone is not None else total
        _COUNTED[key] = (total, part)
    total, part = _COUNTED[key]
    return {"forward": total, "backbone": part}


def _seg000_images(cfg, table: pd.DataFrame, train: pd.Series) -> tuple[int, int]:
    """Seed 000: optimiser steps of each stage × batch (an epoch of the alternating sampler is
    twice the defect-free training images)."""
    n_negative = int((table.loc[train, "label"] == 0).sum())
    seg = cfg.steps(cfg.seg_epochs, cfg.seg_steps, n_negative) * cfg.batch_size
    clf = cfg.steps(cfg.clf_epochs, cfg.clf_steps, n_negative) * cfg.batch_size
    return seg, clf


def _paired_images(cfg, table: pd.DataFrame, train: pd.Series) -> tuple[int, int]:
    """Seed 004: each step is ``pairs_per_batch`` defective and as many defect-free images."""
    return cfg.steps * cfg.pairs_per_batch * 2, 0


#: Per experiment: ``(trained, head)`` images of one test fold's training, from the config, the
#: samples table and the training rows (a boolean Series).
IMAGE_COUNTS: dict[str, Callable] = {"seg000": _seg000_images, "rec004": _paired_images,
                                     "seg004": _paired_images}


def cell_images(cfg, *, memo: dict | None = None) -> dict[str, int]:
    """Images a cell puts through its networks, summed over its test folds.

    ``trained`` (training steps of the whole network, or of seed 000's segmentation network),
    ``head`` (seed 000's second stage) and ``tested``. Reads the samples table and the folds
    manifest (``memo``: as :func:`~defectlib.experiments.common.cell_folds`); trains nothing.
    """
    table, manifest = cell_folds(cfg, memo)
    folds = manifest.folds_of(table)
    count = IMAGE_COUNTS[cfg.EXPERIMENT]
    trained = head = tested = 0
    for fold in cfg.fold_numbers():
        t, h = count(cfg, table, pd.Series(folds != fold, index=table.index))
        trained, head, tested = trained + t, head + h, tested + int((folds == fold).sum())
    return {"trained": trained, "head": head, "tested": tested}


def _cell_flops(images: Mapping[str, int], flops: Mapping[str, int]) -> tuple[float, float]:
    """(training, testing) FLOPs of a cell: 3× forward per trained image; in seed 000's second
    stage a forward of everything and the classifier's backward (2× its forward)."""
    head_only = flops["forward"] - flops["backbone"]
    train = 3 * flops["backbone"] * images["trained"] + (flops["forward"] + 2 * head_only) * images["head"]
    return float(train), float(flops["forward"] * images["tested"])


def workloads(profile: str, checks=None, *, fold: int = 0, amp: bool | None = None) -> pd.DataFrame:
    """One row per cell the study trains under ``profile`` (:func:`~defectlib.experiments.budget.study_cells`).

    Columns: grid, cell, input ("H×W"), forward_gflop (per test image), trained, head, tested
    (images, :func:`cell_images`), train_pflop, test_pflop, pflop, and what the results cache
    recorded of the cell (wall_min, finished, commit, heap: see
    :func:`~defectlib.experiments.budget.recorded`). Nothing is trained. ``amp``: as
    :func:`~defectlib.experiments.budget.study_cells`.
    """
    rows, memo = [], {}
    for grid, label, cfg in study_cells(profile, checks, fold=fold, amp=amp):
        images = cell_images(cfg, memo=memo)
        flops = network_flops(cfg)
        train, test = _cell_flops(images, flops)
        rows.append({"grid": grid, "cell": label, "input": "×".join(str(v) for v in cfg.input_size),
                     "forward_gflop": flops["forward"] / 1e9, **images,
                     "train_pflop": train / 1e15, "test_pflop": test / 1e15, "pflop": (train + test) / 1e15,
                     **recorded(cached_result(cfg, memo=memo))})
    return pd.DataFrame(rows)


def cost_table(work: pd.DataFrame, *, peak_flops: float | None = None) -> pd.DataFrame:
    """Per grid (and in total): cells, finished cells, images, PFLOP, and over the finished cells
    the recorded hours and the achieved rate (GFLOP/s; ``peak_flops`` given: its fraction).

    The rate is the counted FLOPs of the finished cells over their recorded wall time: training,
    testing, data loading and everything else a run does.
    """
    work = work.assign(done_pflop=work["pflop"].where(work["finished"], 0.0),
                       wall_h=work["wall_min"].where(work["finished"], 0.0) / 60)
    grids = work.groupby("grid", sort=False).agg(
        cells=("cell", "size"), finished=("finished", "sum"), trained=("trained", "sum"), head=("head", "sum"),
        tested=("tested", "sum"), pflop=("pflop", "sum"), done_pflop=("done_pflop", "sum"), hours=("wall_h", "sum"))
    grids.loc["total"] = grids.sum()
    grids["gflop_per_s"] = grids["done_pflop"] * 1e6 / (grids["hours"] * 3600)
    if peak_flops:
        grids["fraction_of_peak"] = grids["gflop_per_s"] * 1e9 / peak_flops
    return grids.drop(columns="done_pflop").astype({"cells": int, "finished": int})


def projection(target: pd.DataFrame, measured: pd.DataFrame, *, peaks: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Time ``target``'s grids (a :func:`cost_table`) would take at ``measured``'s achieved rate
    per grid (``hours_here``), and at each device's peak rate (``peaks``: name → FLOP/s;
    ``min_at_<name>``, a floor: no implementation runs faster than its device's peak).

    Achieved rates depend on the input size and the network (larger inputs use a machine
    better), so ``hours_here`` carries one profile's efficiency over to another: an estimate,
    not a measurement.
    """
    out = target[["cells", "pflop"]].copy()
    rate = measured["gflop_per_s"].reindex(out.index) * 1e9
    out["measured_gflop_per_s"] = rate / 1e9
    out["hours_here"] = out["pflop"] * 1e15 / rate / 3600
    for name, flops in (peaks or {}).items():
        out[f"min_at_{name}"] = out["pflop"] * 1e15 / flops / 60
    return out
