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


def _bench(cells, seconds: float) -> pd.DataFrame:
    from defectlib.perf.bench import network_name

    rows = {(network_name(c), *map(int, c.input_size)) for c in cells}
    return pd.DataFrame([{"model": m, "height": h, "width": w, "train_step_s": seconds} for m, h, w in sorted(rows)])


def test_cells_without_a_like_saved_fold_are_estimated_from_the_bench_scaled_by_the_saved_folds(isolated):
    from defectlib.experiments.grid import study_cells
    from defectlib.perf.cost import training_images

    cells = study_cells("smoke")
    first = cells[0]
    bench = _bench(cells, seconds=0.5)
    assert cell_costs("smoke", bench=bench)["hours_left"].isna().all()  # nothing saved: nothing to scale by
    # one fold of the first cell took three times what the bench predicts for it
    predicted_s = training_images(first) * 0.5
    cell_run(first).save_part("fold0", pd.DataFrame({"sample_id": ["a"]}), seconds=3 * predicted_s)
    costs = cell_costs("smoke", bench=bench)
    assert not costs["hours_left"].isna().any()
    by_key = dict(zip(costs["key"], costs.itertuples()))
    assert by_key[cell_run(first).key].estimated_from == "saved folds"
    other = next(c for c in cells if c.EXPERIMENT == "rec004")  # another experiment: the pooled scale
    row = by_key[cell_run(other).key]
    assert row.estimated_from == "bench"
    assert math.isclose(row.hours_left, other.n_folds * 3 * training_images(other) * 0.5 / 3600)
    # without the bench the same cell has no estimate
    assert math.isnan(cell_costs("smoke").set_index("key").loc[cell_run(other).key, "hours_left"])


def test_training_images_count_steps_and_batches_and_a_crop_as_a_whole_image():
    from defectlib.experiments.seg000 import Seg000Config
    from defectlib.experiments.seg004 import Seg004Config
    from defectlib.perf.cost import training_images

    s000 = Seg000Config.from_profile("smoke")
    assert training_images(s000) == s000.seg_steps + s000.clf_steps
    assert training_images(Seg000Config.from_profile("paper")) is None  # epochs: depends on the data
    s004 = Seg004Config.from_profile("smoke")
    assert s004.local_input and s004.crop_size != s004.input_size
    # the backbone sees the whole image with or without the local input
    assert training_images(s004) == s004.steps * 2 * s004.pairs_per_batch
    whole = Seg004Config.from_profile("smoke", local_input=False)
    assert training_images(whole) == training_images(s004)
