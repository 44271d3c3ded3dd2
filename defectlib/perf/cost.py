"""What the study's profile costs: the compute time its runs recorded, and what is left.

Every fold a run saves records the seconds it computed (``parts/fold<k>.json``, ``wall_time_s``)
and a finished run their sum (``provenance.json``). :func:`cell_costs` reads them for every
cell of a profile through :func:`~defectlib.experiments.grid.grid_status`, which also estimates
the hours a cell still needs from the saved folds of cells like it. A cell with no like cell
saved yet gets an estimate from the bench (:func:`bench_estimates`) when one is given.
:func:`cost_summary` adds them up per experiment. Nothing is trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd

from .bench import network_name

__all__ = ["cell_costs", "estimate_costs", "cost_summary", "bench_estimates", "training_images"]

#: Per experiment: the images one fold's optimiser steps see, in units of the network's input,
#: or None where the steps depend on the data (epochs). seg004's local image input still sends
#: the whole image through the backbone, which dominates the step, so a crop counts as a whole
#: image.
_TRAINING_IMAGES: dict[str, Callable] = {
    "seg000": lambda c: (None if c.seg_epochs is not None or c.clf_epochs is not None
                         else float(c.seg_steps + c.clf_steps)),
    "rec004": lambda c: float(c.steps * 2 * c.pairs_per_batch),
    "seg004": lambda c: float(c.steps * 2 * c.pairs_per_batch),
}


def training_images(cfg) -> float | None:
    """The images one fold of ``cfg`` trains on, in units of its network's input (None when
    its length is given in epochs).

    Examples
    --------
    >>> from defectlib.experiments.rec004 import Rec004Config
    >>> training_images(Rec004Config.from_profile("smoke"))  # 6 steps of 2 pairs
    24.0
    """
    return _TRAINING_IMAGES[cfg.EXPERIMENT](cfg)


def bench_estimates(cells: Sequence, status: pd.DataFrame, bench: pd.DataFrame) -> list[float]:
    """Hours per fold of each cell, predicted from the bench: its training images times the
    bench's training step of its network at its input, scaled by how long saved folds took
    against the same prediction. The scale comes from the saved folds of its experiment on
    its dataset (their validation and test sets, and how often they are scored, are its
    own), else of its experiment, else of all experiments. NaN where the bench lacks the network or size, or
    nothing is saved at all.

    ``cells`` and ``status`` are aligned (:func:`~defectlib.experiments.grid.grid_status` of
    the cells); ``bench`` is a bench run's samples (``model``, ``height``, ``width``,
    ``train_step_s``).

    Examples
    --------
    A rec004 fold on dataset "a" took twice its prediction, one on "b" four times: a cell on
    "b" is scaled by four, a seg004 cell (nothing of its experiment saved) by the pooled three.

    >>> from types import SimpleNamespace as Cfg
    >>> def cell(experiment, dataset):
    ...     return Cfg(EXPERIMENT=experiment, dataset=dataset, method="dr", model="dr",
    ...                input_size=(8, 8), steps=900, pairs_per_batch=1)
    >>> cells = [cell("rec004", "a"), cell("rec004", "b"), cell("rec004", "b"), cell("seg004", "a")]
    >>> status = pd.DataFrame({"saved": [1, 1, 0, 0], "cpu_hours": [1.0, 2.0, 0.0, 0.0]})
    >>> bench = pd.DataFrame({"model": ["rec004/dr", "seg004/dr"], "height": [8, 8], "width": [8, 8],
    ...                       "train_step_s": [1.0, 1.0]})  # 1,800 images of 1 s: 0.5 h predicted
    >>> bench_estimates(cells, status, bench)
    [1.0, 2.0, 2.0, 1.5]
    """
    step = {(r.model, int(r.height), int(r.width)): float(r.train_step_s) for r in bench.itertuples()}

    def predicted(cfg) -> float:
        images = training_images(cfg)
        seconds = step.get((network_name(cfg), int(cfg.input_size[0]), int(cfg.input_size[1])))
        return math.nan if images is None or seconds is None else images * seconds / 3600

    prediction = [predicted(cfg) for cfg in cells]
    table = status.assign(predicted=prediction, experiment=[c.EXPERIMENT for c in cells],
                          dataset=[getattr(c, "dataset", None) for c in cells])
    table = table[(table["saved"] > 0) & table["predicted"].notna()]
    table = table.assign(expected=table["predicted"] * table["saved"])

    def scales(by: list[str]) -> dict:
        sums = table.groupby(by)[["cpu_hours", "expected"]].sum()
        return (sums["cpu_hours"] / sums["expected"]).to_dict()

    by_dataset, by_experiment = scales(["experiment", "dataset"]), scales(["experiment"])
    pooled = float(table["cpu_hours"].sum() / table["expected"].sum()) if table["expected"].sum() > 0 else math.nan

    def scale(cfg) -> float:
        key = (cfg.EXPERIMENT, getattr(cfg, "dataset", None))
        return by_dataset.get(key, by_experiment.get(cfg.EXPERIMENT, pooled))

    return [p * scale(cfg) for cfg, p in zip(cells, prediction)]


def cell_costs(profile: str, *, bench: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per cell of ``profile``, in the order the grid computes them
    (:func:`estimate_costs` of the profile's cells)."""
    from ..experiments.grid import study_cells

    return estimate_costs(study_cells(profile), bench=bench)


def estimate_costs(cells: Sequence, *, bench: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per cell, in the order given.

    Columns as :func:`~defectlib.experiments.grid.grid_status`: cell, experiment, key, folds,
    saved, running, state (done, running, started, pending), cpu_hours (recorded by its saved
    folds) and hours_left (an estimate from the saved folds of like cells), and
    ``estimated_from``: "saved folds", "bench" (``bench``, a bench run's samples, filled the
    estimate in: :func:`bench_estimates`) or None (no estimate, hours_left NaN).
    """
    from ..experiments.grid import grid_status

    cells = list(cells)
    table = grid_status(cells)
    if table.empty:
        return table
    table["estimated_from"] = [None if math.isnan(h) else "saved folds" for h in table["hours_left"]]
    if bench is not None:
        per_fold = bench_estimates(cells, table, bench)
        for i, (row, hours) in enumerate(zip(table.itertuples(), per_fold)):
            if math.isnan(row.hours_left) and not math.isnan(hours):
                table.loc[table.index[i], ["hours_left", "estimated_from"]] = [(row.folds - row.saved) * hours, "bench"]
    return table


def cost_summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Per experiment, and in total: cells, cells done, CPU-hours recorded, CPU-hours estimated
    to finish (over the cells that have an estimate) and cells without an estimate.

    Examples
    --------
    >>> cells = pd.DataFrame({"experiment": ["a", "a", "b"], "state": ["done", "pending", "pending"],
    ...                       "cpu_hours": [2.0, 0.0, 0.0], "hours_left": [0.0, 2.5, float("nan")]})
    >>> cost_summary(cells)
                cells  done  cpu_hours  hours_left  no_estimate
    experiment
    a               2     1        2.0         2.5            0
    b               1     0        0.0         0.0            1
    total           3     1        2.0         2.5            1
    """
    table = cells.assign(done=cells["state"].eq("done"), no_estimate=cells["hours_left"].isna())
    out = table.groupby("experiment", sort=False).agg(
        cells=("state", "size"), done=("done", "sum"), cpu_hours=("cpu_hours", "sum"),
        hours_left=("hours_left", "sum"), no_estimate=("no_estimate", "sum"))
    out.loc["total"] = out.sum()
    return out.astype({"cells": int, "done": int, "no_estimate": int})
