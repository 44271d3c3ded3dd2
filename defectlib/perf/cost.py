"""What the study's profile costs: the compute time its runs recorded, and what is left.

Every fold a run saves records the seconds it computed (``parts/fold<k>.json``, ``wall_time_s``)
and a finished run their sum (``provenance.json``). :func:`cell_costs` reads them for every
cell of a profile through :func:`~defectlib.experiments.grid.grid_status`, which also estimates
the hours a cell still needs from the saved folds of cells like it. :func:`cost_summary` adds
them up per experiment. Nothing is trained.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["cell_costs", "cost_summary"]


def cell_costs(profile: str) -> pd.DataFrame:
    """One row per cell of ``profile``, in the order the grid computes them.

    Columns as :func:`~defectlib.experiments.grid.grid_status`: cell, experiment, key, folds,
    saved, running, state (done, running, started, pending), cpu_hours (recorded by its saved
    folds) and hours_left (an estimate; NaN where no fold of a like cell is saved yet).
    """
    from ..experiments.grid import grid_status, study_cells

    return grid_status(study_cells(profile))


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
