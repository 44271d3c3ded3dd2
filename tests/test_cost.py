"""What a profile asks of the hardware (``defectlib.experiments.cost``), on synthetic data."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from defectlib.bench import BENCH_MODELS
from defectlib.experiments import cost, seg000
from defectlib.experiments.budget import study_cells
from defectlib.experiments.common import cell_folds
from defectlib.experiments.rec004 import Rec004Config
from defectlib.experiments.seg000 import Seg000Config
from defectlib.models.counting import flops_per_image


def test_network_flops_on_meta_equal_the_count_on_real_weights():
    cfg = Seg000Config.from_profile("smoke", model="proposed", input_size=[96, 48])
    whole = BENCH_MODELS["proposed"].build()[0]
    counted = cost.network_flops(cfg)
    assert counted["forward"] == flops_per_image(whole, (96, 48))
    assert counted["backbone"] == flops_per_image(whole.segnet, (96, 48))
    assert 0 < counted["backbone"] < counted["forward"]
    rec = cost.network_flops(Rec004Config.from_profile("smoke", method="resnet50"))
    assert rec["forward"] == rec["backbone"] > 0  # no second stage: the whole network trains


def test_cell_images_count_steps_per_fold_and_every_test_image(isolated):
    cfg = Seg000Config.from_profile("smoke", model="proposed", dilation=0)
    table, manifest = cell_folds(cfg)
    images = cost.cell_images(cfg)
    assert images == {"trained": cfg.seg_steps * cfg.n_folds, "head": cfg.clf_steps * cfg.n_folds,
                      "tested": len(table)}
    # epochs of the alternating sampler: twice the defect-free training images of each fold
    by_epochs = cfg.model_copy(update={"seg_epochs": 2, "clf_epochs": 1, "test_folds": [1]})
    folds = manifest.folds_of(table)
    negatives = int(((folds != 1) & (table["label"] == 0).to_numpy()).sum())
    assert cost.cell_images(by_epochs) == {"trained": 2 * 2 * negatives, "head": 2 * negatives,
                                           "tested": int((folds == 1).sum())}
    rec = Rec004Config.from_profile("smoke", method="dr", augment=False)
    assert cost.cell_images(rec)["trained"] == rec.steps * rec.pairs_per_batch * 2 * rec.n_folds


def test_cell_flops_count_a_training_step_as_three_forwards():
    images = {"trained": 10, "head": 4, "tested": 7}
    flops = {"forward": 100, "backbone": 80}
    train, test = cost._cell_flops(images, flops)
    # stage 1: 3 x backbone; stage 2: forward of everything + the head's backward (2 x 20)
    assert train == 3 * 80 * 10 + (100 + 2 * 20) * 4
    assert test == 100 * 7


def test_workloads_and_cost_table_set_counts_beside_recorded_time(isolated):
    work = cost.workloads("smoke", checks=())
    assert len(work) == len(study_cells("smoke", ())) and not work["finished"].any()
    assert (work["pflop"] > 0).all()
    assert work["pflop"].tolist() == pytest.approx((work["train_pflop"] + work["test_pflop"]).tolist())
    cfg = seg000.grid_configs("smoke")[0]
    result = seg000.run(cfg, progress=False)
    work = cost.workloads("smoke", checks=())
    done = work[work["finished"]]
    assert len(done) == 1 and done["wall_min"].iloc[0] == pytest.approx(result.provenance["wall_time_s"] / 60)
    table = cost.cost_table(work, peak_flops=1e12)
    row = table.loc["seed 000 annotation sweep"]
    assert row["finished"] == 1 and row["cells"] == len(seg000.grid_configs("smoke"))
    rate = done["pflop"].iloc[0] * 1e15 / (done["wall_min"].iloc[0] * 60)
    assert row["gflop_per_s"] * 1e9 == pytest.approx(rate)
    assert row["fraction_of_peak"] == pytest.approx(rate / 1e12)
    assert math.isnan(table.loc["seed 004 recognition", "gflop_per_s"])  # nothing of it recorded
    assert table.loc["total", "pflop"] == pytest.approx(work["pflop"].sum())


def test_projection_divides_by_the_measured_rate_and_by_each_peak():
    target = pd.DataFrame({"cells": [2], "pflop": [3.6]}, index=["grid"])
    measured = pd.DataFrame({"gflop_per_s": [1000.0]}, index=["grid"])
    out = cost.projection(target, measured, peaks={"device": 1e15})
    assert out.loc["grid", "hours_here"] == pytest.approx(3.6e15 / 1e12 / 3600)
    assert out.loc["grid", "min_at_device"] == pytest.approx(3.6 / 60)


def test_doctests():
    import doctest

    result = doctest.testmod(cost, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
