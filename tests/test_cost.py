"""defectlib.perf.cost: the compute time a profile's runs recorded, and what is left."""

from __future__ import annotations

import math

import pandas as pd

from defectlib.experiments.common import cell_run
from defectlib.perf.cost import cell_costs, cost_summary


def test_recorded_fold_seconds_become_cpu_hours_and_an_estimate_for_like_cells(isolated):
    before = cell_costs("smoke")
    assert (before["state"] == "pending").all() and (before["cpu_hours"] == 0).all()
    assert before["hours_left"].isna().all()  # nothing saved: no estimate yet
    from defectlib.experiments.grid import study_cells

    first = study_cells("smoke")[0]
    cell_run(first).save_part("fold0", pd.DataFrame({"sample_id": ["a"]}), seconds=1800)
    after = cell_costs("smoke").set_index("key")
    row = after.loc[cell_run(first).key]
    assert row["state"] == "started" and math.isclose(row["cpu_hours"], 0.5)
    assert math.isclose(row["hours_left"], 0.5 * (first.n_folds - 1))
    summary = cost_summary(after)
    assert math.isclose(summary.loc["total", "cpu_hours"], 0.5)
    assert summary.loc["total", "cells"] == len(after) and summary.loc["total", "done"] == 0
