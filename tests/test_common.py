"""The experiments' shared pieces: choice-checked fields, fold splits, the resumable fold loop under
locks, constant-output folds, the grid's workers and status, loss plots."""

from __future__ import annotations

import doctest
import os
import threading
import time
from functools import partial

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, ValidationError

import defectlib.experiments.common as common
import defectlib.plots.common as plots_common
from defectlib.experiments import grid, seg000
from defectlib.experiments.common import (FoldData, FoldOutcome, all_of, constant_output, cross_validate,
                                          fold_split, one_of, train_one_fold)
from defectlib.experiments.seg000 import Seg000Config, Seg000GridConfig
from defectlib.locks import FileLock, is_locked

from helpers import interrupt_fold_once


class Cell(BaseModel):
    model: one_of(("unet", "fcn"), "model") = "unet"
    models: all_of(("unet", "fcn"), "models") = ["unet"]
    variants: all_of(("a", "b"), "variants", allow_empty=True) = ["a"]


def test_choice_fields_accept_the_choices_and_serialise_as_plain_values():
    cell = Cell(model="fcn", models=["fcn", "unet"], variants=[])
    assert cell.model_dump(mode="json") == {"model": "fcn", "models": ["fcn", "unet"], "variants": []}


@pytest.mark.parametrize(("values", "message"), [
    ({"model": "vgg"}, "unknown model 'vgg'; choose one of unet, fcn"),
    ({"models": ["fcn", "vgg", "x"]}, "unknown or no models ['vgg', 'x']; choose from unet, fcn"),
    ({"models": []}, "unknown or no models []; choose from unet, fcn"),
    ({"variants": ["c"]}, "unknown variants ['c']; choose from a, b"),
])
def test_choice_fields_name_the_bad_value_and_the_choices(values, message):
    with pytest.raises(ValidationError) as info:
        Cell(**values)
    assert message in str(info.value)


def fake_fold(cfg, data, current, *, checkpoints, progress=True):
    """A 'training' that scores every test image by its label, and stores no weights."""
    test = data.test
    current.save_artifact(f"fold{data.fold}", pretrained=np.array("None"))
    part = pd.DataFrame({"sample_id": test["sample_id"].to_numpy(), "fold": data.fold,
                         "label": test["label"].to_numpy(), "score": test["label"].to_numpy() * 0.8,
                         "seg_max": test["label"].to_numpy() * 0.7})
    return FoldOutcome(part=part, seconds=1.5, checks={"constant_output": constant_output(part["score"]),
                                                       "n_val": len(data.val)})


def test_cross_validate_resumes_and_reads_a_finished_cell_back(isolated, monkeypatch):
    import sys

    module = sys.modules[__name__]
    calls = interrupt_fold_once(monkeypatch, module)
    cfg = Seg000Config.from_profile("smoke")

    def count(samples):
        return {"n": int(len(samples))}

    with pytest.raises(KeyboardInterrupt):
        cross_validate(cfg, module._train_fold, count, desc="test", progress=False)
    result = cross_validate(cfg, module._train_fold, count, desc="test", progress=False, record_pretrained=True)
    assert calls == [0, 1, 1, 2]  # fold 0 was not trained again
    assert result.metrics["n"] == len(result.samples)
    assert set(result.metrics) == {"n", "fold_checks", "failed_folds"}
    assert result.metrics["failed_folds"] == [] and sorted(result.metrics["fold_checks"]) == ["0", "1", "2"]
    assert all(c["n_val"] > 0 for c in result.metrics["fold_checks"].values())
    assert sorted(result.samples["fold"].unique()) == [0, 1, 2] and result.samples["sample_id"].is_unique
    assert result.provenance["device_used"] in ("cpu", "cuda") and result.provenance["pretrained"] == "None"
    # the compute time is what the folds report (resumes included), not the time between saves
    assert result.provenance["wall_time_s"] == pytest.approx(3 * 1.5)
    assert sorted(result.provenance["parts"]) == ["fold0", "fold1", "fold2"]
    again = cross_validate(cfg, module._train_fold, count, desc="test", progress=False)
    assert again.key == result.key and calls == [0, 1, 1, 2]


_train_fold = fake_fold  # what interrupt_fold_once wraps


# ------------------------------------------------------------------------------ fold_split


@pytest.fixture(scope="module")
def synthetic_folds(tmp_path_factory):
    """The synthetic dataset's samples and folds manifest, in a cache of the module's own."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("folds")
    mp.setenv("DEFECTLIB_RESULTS", str(root / "results"))
    mp.setenv("DEFECTLIB_CACHE", str(root / "cache"))
    try:
        yield common.cell_folds(Seg000Config.from_profile("smoke"))
    finally:
        mp.undo()


@pytest.mark.parametrize("fold", [0, 1, 2])
def test_fold_split_carves_validation_from_the_training_folds_only(synthetic_folds, fold):
    table, manifest = synthetic_folds
    table = table.assign(group=manifest.groups_of(table))
    folds = manifest.folds_of(table)
    data = fold_split(table, folds, fold, val_fraction=0.2, seed=0)
    assert isinstance(data, FoldData) and data.fold == fold
    ids = {name: set(getattr(data, name)["sample_id"]) for name in ("train", "val", "test")}
    # the test fold is exactly the manifest's fold; train + val are exactly the other folds
    assert ids["test"] == set(table.loc[folds == fold, "sample_id"])
    assert ids["train"] | ids["val"] == set(table.loc[folds != fold, "sample_id"])
    assert not ids["train"] & ids["val"] and not ids["val"] & ids["test"] and not ids["train"] & ids["test"]
    # no group in two sets
    groups = {name: set(getattr(data, name)["group"]) for name in ("train", "val", "test")}
    assert not groups["train"] & groups["val"] and not groups["val"] & groups["test"]
    assert not groups["train"] & groups["test"]
    # about val_fraction of the training groups, both classes among them (stratified)
    n_train_groups = len(groups["train"] | groups["val"])
    assert 0.1 <= len(groups["val"]) / n_train_groups <= 0.3
    assert set(data.val["label"]) == {0, 1} and set(data.train["label"]) == {0, 1}


def test_fold_split_is_a_pure_function_of_the_manifest_and_seed(synthetic_folds):
    table, manifest = synthetic_folds
    folds = manifest.folds_of(table)
    for fold in range(3):
        a = fold_split(table, folds, fold, val_fraction=0.2, seed=0)
        b = fold_split(table.copy(), folds.copy(), fold, val_fraction=0.2, seed=0)
        for name in ("train", "val", "test"):
            pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    a = fold_split(table, folds, 0, val_fraction=0.2, seed=0)
    # the seed shuffles the groups (on this data it moves fold 0's validation groups) ...
    others = [fold_split(table, folds, 0, val_fraction=0.2, seed=s) for s in (1, 2, 3)]
    assert any(o.val["sample_id"].tolist() != a.val["sample_id"].tolist() for o in others)
    for other in others:  # ... never the test fold
        pd.testing.assert_frame_equal(other.test, a.test)
    bigger = fold_split(table, folds, 0, val_fraction=0.45, seed=0)
    assert len(bigger.val) > len(a.val)


def test_constant_output_flags_near_constant_scores():
    assert constant_output([0.5] * 10) and constant_output([0.5, 0.52, 0.49]) and constant_output([0.7])
    assert constant_output([np.nan, 0.3, np.nan])  # fewer than two finite scores
    assert not constant_output([0.1, 0.9]) and not constant_output([0.0, 0.0, 0.0, 1.0])
    assert constant_output([0.2, 0.3], limit=0.1) and not constant_output([0.2, 0.3], limit=0.01)


def test_constant_output_folds_are_counted_as_failed_in_the_metrics(isolated):
    def fold_with_a_collapse(cfg, data, current, *, checkpoints, progress=True):
        outcome = fake_fold(cfg, data, current, checkpoints=checkpoints)
        if data.fold == 1:  # this fold's network collapsed to one score for every image
            outcome.part["score"] = 0.5
            outcome.checks["constant_output"] = constant_output(outcome.part["score"])
        return outcome

    cfg = Seg000Config.from_profile("smoke")
    result = cross_validate(cfg, fold_with_a_collapse, partial(seg000.cell_metrics, cfg), desc="t", progress=False)
    m = result.metrics
    assert m["failed_folds"] == [1]
    assert m["fold_checks"]["1"]["constant_output"] is True
    assert m["fold_checks"]["0"]["constant_output"] is False and m["fold_checks"]["2"]["constant_output"] is False
    assert {"f1", "ap", "per_fold", "seg_max_ap", "map_decision"} <= set(m)
    assert seg000.grid_table([result]).loc[0, "failed_folds"] == 1


def test_plateau_table_flags_rises_beyond_the_validation_images_standard_error():
    curves = {"cell": {0: {"train_eval_step": np.array([100, 200, 300]), "train_eval_ap": np.array([0.4, 0.5, 0.6])},
                       1: {"train_eval_step": np.array([100, 200, 300]), "train_eval_ap": np.array([0.9, 0.9, 0.9])}}}
    table = common.plateau_table(curves, prefix="train", positives={"cell": {0: 100, 1: 7}}).set_index("fold")
    assert table.loc[0, "change_last_third"] == pytest.approx(0.1)
    assert table.loc[0, "standard_error"] == pytest.approx(np.sqrt(0.6 * 0.4 / 100))
    assert table.loc[0, "rising"] == 1.0 and table.loc[1, "rising"] == 0.0  # 0.1 > 0.049; a flat curve
    few = common.plateau_table(curves, prefix="train", positives={"cell": {0: 2}}).set_index("fold")
    assert few.loc[0, "rising"] == 0.0  # the same rise is within the error on 2 defective images
    assert np.isnan(few.loc[1, "standard_error"]) and np.isnan(few.loc[1, "rising"])  # count unknown
    assert common.plateau_table(curves, prefix="train")["rising"].isna().all()
    f1 = {"cell": {0: {"train_eval_step": np.array([1, 2]), "train_eval_pixel_f1": np.array([0.1, 0.2])}}}
    short = common.plateau_table(f1, prefix="train", metric="pixel_f1", positives={"cell": {0: 9}})
    assert np.isnan(short.loc[0, "standard_error"]) and np.isnan(short.loc[0, "rising"])  # too few points


def test_plateau_table_never_calls_a_fold_at_the_ceiling_rising():
    # The standard error of an AP of 1 is 0, so any climb to it would exceed it; no step can raise it.
    steps = np.array([100, 200, 300])
    curves = {"cell": {0: {"train_eval_step": steps, "train_eval_ap": np.array([0.8, 0.9, 1.0])},
                       1: {"train_eval_step": steps, "train_eval_ap": np.array([0.8, 0.9, 0.99])}}}
    table = common.plateau_table(curves, prefix="train", positives={"cell": {0: 6, 1: 600}}).set_index("fold")
    assert table.loc[0, "standard_error"] == 0.0 and table.loc[0, "rising"] == 0.0
    assert table.loc[1, "rising"] == 1.0


def test_plateau_table_tests_a_pixel_f1_curve_for_a_trend_beyond_its_scatter():
    steps = np.arange(1, 31) * 100
    noise = np.where(np.arange(30) % 2, 0.05, -0.05)
    curves = {"cell": {0: {"train_eval_step": steps, "train_eval_pixel_f1": 0.3 + 0.02 * np.arange(30) + noise},
                       1: {"train_eval_step": steps, "train_eval_pixel_f1": 0.5 + noise},
                       2: {"train_eval_step": steps, "train_eval_pixel_f1": 0.5 + 3 * noise * (np.arange(30) > 19)}}}
    table = common.plateau_table(curves, prefix="train", metric="pixel_f1").set_index("fold")
    assert table.loc[0, "rising"] == 1.0 and table.loc[0, "trend"] == pytest.approx(0.2, abs=0.02)
    assert table.loc[1, "rising"] == 0.0 and abs(table.loc[1, "trend"]) < 2 * table.loc[1, "standard_error"]
    assert table.loc[2, "rising"] == 0.0  # a noisy end point is no trend


def test_validation_positives_counts_the_defective_images_each_fold_validates_on(isolated):
    cfg = Seg000Config.from_profile("smoke")
    table, manifest = common.cell_folds(cfg)
    counts = common.validation_positives(cfg)
    assert sorted(counts) == list(range(cfg.n_folds))
    for fold, n in counts.items():
        val = fold_split(table, manifest.folds_of(table), fold, val_fraction=cfg.val_fraction, seed=cfg.folds_seed).val
        assert n == int(val["label"].sum()) > 0


def test_pending_names_each_missing_cell_once_and_leaves_out_finished_ones(isolated):
    k0, k9 = (Seg000Config.from_profile("smoke", dilation=k) for k in (0, 9))
    name = lambda cfg: f"k={cfg.dilation}"  # noqa: E731
    # k0 twice, as a chapter lists a grid's cell again as an ablation's reference
    assert common.pending([k0, k9, k0], [], name) == ["k=0", "k=9"]
    result = cross_validate(k0, fake_fold, partial(seg000.cell_metrics, k0), desc="t", progress=False)
    assert common.pending([k0, k9, k0], [result], name) == ["k=9"]
    train_one_fold(k9, fake_fold, 1, progress=False)
    assert common.pending([k0, k9], [result], name) == [f"k=9 (1 of {k9.n_folds} folds saved)"]


def test_partial_results_read_the_saved_folds_of_unfinished_cells_only(isolated):
    k0, k5, k9 = (Seg000Config.from_profile("smoke", dilation=k) for k in (0, 5, 9))
    finished = cross_validate(k0, fake_fold, partial(seg000.cell_metrics, k0), desc="t", progress=False)
    for fold in (0, 2):
        train_one_fold(k9, fake_fold, fold, progress=False)
    partials = common.partial_results([k0, k5, k9, k9], [finished], seg000.cell_metrics)
    assert len(partials) == 1  # k0 is finished, k5 has nothing saved, k9 is listed once
    [r] = partials
    assert r.provenance["folds_saved"] == [0, 2] and r.config == k9
    assert sorted(r.samples["fold"].unique()) == [0, 2] and sorted(r.metrics["per_fold"]) == ["0", "2"]
    assert r.metrics == {**seg000.cell_metrics(k9, r.samples), "fold_checks": r.metrics["fold_checks"],
                         "failed_folds": []}
    assert sorted(r.metrics["fold_checks"]) == ["0", "2"]
    assert not common.cell_run(k9).complete  # reading never finishes a cell

    [same] = common.same_folds(partials, [finished], seg000.cell_metrics)
    assert same.key == finished.key and same.provenance["folds_saved"] == [0, 2]
    assert sorted(same.samples["fold"].unique()) == [0, 2] and sorted(same.metrics["per_fold"]) == ["0", "2"]
    assert same.metrics["per_fold"] == {k: v for k, v in finished.metrics["per_fold"].items() if k in ("0", "2")}
    assert same.provenance["wall_time_s"] == pytest.approx(2 * 1.5, abs=0.01)
    assert common.same_folds([], [finished], seg000.cell_metrics) == []


# ------------------------------------------------------------------------------ fold tasks under locks


def test_train_one_fold_trains_once_and_clears_its_checkpoints(isolated):
    cfg = Seg000Config.from_profile("smoke")
    current = common.cell_run(cfg)
    seen = []

    def fold_with_checkpoint(cfg, data, current, *, checkpoints, progress=True):
        seen.append(checkpoints)
        checkpoints.mkdir(parents=True, exist_ok=True)
        (checkpoints / "model.pt").write_text("state")
        if len(seen) == 1:
            raise KeyboardInterrupt  # stopped mid-fold: the checkpoint stays for the next try
        return fake_fold(cfg, data, current, checkpoints=checkpoints)

    with pytest.raises(KeyboardInterrupt):
        train_one_fold(cfg, fold_with_checkpoint, 2)
    assert seen[0] == common.checkpoint_dir(current, 2) and (seen[0] / "model.pt").is_file()
    assert not is_locked(common.lock_path(current, "fold2"))  # an exception releases the lock
    assert train_one_fold(cfg, fold_with_checkpoint, 2, progress=False) == "trained"
    assert current.has_part("fold2") and not seen[0].exists()  # saved: its checkpoints are removed
    assert train_one_fold(cfg, fold_with_checkpoint, 2, progress=False) == "saved"
    assert len(seen) == 2
    assert common.finish_cell(cfg, lambda s: {"n": len(s)}) is None  # folds 0 and 1 are missing


def test_a_fold_held_by_another_process_is_busy_or_waited_for(isolated):
    cfg = Seg000Config.from_profile("smoke")
    current = common.cell_run(cfg)
    calls = []

    def counting(cfg, data, current, **kw):
        calls.append(data.fold)
        return fake_fold(cfg, data, current, **kw)

    lock = common.lock_path(current, "fold0")
    with FileLock(lock) as held:  # as another worker training fold 0 would hold it
        assert held and is_locked(lock)
        assert train_one_fold(cfg, counting, 0, wait=False, progress=False) == "busy"
        with FileLock(lock, wait=False) as second:
            assert second is False
    assert calls == [] and not is_locked(lock)
    assert train_one_fold(cfg, counting, 0, wait=False, progress=False) == "trained"
    assert calls == [0]


def _slow_fold(calls_file, cfg, data, current, **kw):
    with open(calls_file, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(1.5)
    return fake_fold(cfg, data, current, **kw)


def _train_in_child(calls_file, queue):
    cfg = Seg000Config.from_profile("smoke")
    queue.put(train_one_fold(cfg, partial(_slow_fold, calls_file), 1, wait=True, progress=False))


def test_two_processes_never_train_the_same_fold(isolated):
    """A forked worker trains fold 1; this process finds it busy, then waits and finds it saved."""
    import multiprocessing

    cfg = Seg000Config.from_profile("smoke")
    current = common.cell_run(cfg)  # the dataset and its folds exist before the processes start
    calls_file = isolated / "calls.txt"
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_train_in_child, args=(calls_file, queue))
    child.start()
    try:
        lock = common.lock_path(current, "fold1")
        deadline = time.monotonic() + 60
        while not is_locked(lock):
            assert child.is_alive() and time.monotonic() < deadline, "the child never took the fold's lock"
            time.sleep(0.02)
        assert train_one_fold(cfg, partial(_slow_fold, calls_file), 1, wait=False, progress=False) == "busy"
        assert train_one_fold(cfg, partial(_slow_fold, calls_file), 1, wait=True, progress=False) == "saved"
        assert queue.get(timeout=60) == "trained"
    finally:
        child.join(timeout=60)
    assert child.exitcode == 0
    assert calls_file.read_text().split() == [str(child.pid)]  # trained once, by the child
    assert current.has_part("fold1") and not is_locked(lock)


def test_two_threads_racing_for_a_fold_train_it_once(isolated):
    cfg = Seg000Config.from_profile("smoke")
    common.cell_run(cfg)
    calls_file = isolated / "calls.txt"
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(
        train_one_fold(cfg, partial(_slow_fold, calls_file), 2, wait=True, progress=False))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["saved", "trained"]
    assert len(calls_file.read_text().split()) == 1


# ------------------------------------------------------------------------------ the grid


def _smoke_grids():
    from defectlib.experiments.rec004 import Rec004GridConfig
    from defectlib.experiments.seg004 import Seg004GridConfig

    return (Seg000GridConfig.from_profile("smoke"), Rec004GridConfig.from_profile("smoke"),
            Seg004GridConfig.from_profile("smoke"))


def test_study_cells_list_every_cell_of_the_smoke_profile_once(isolated):
    cells = grid.study_cells("smoke")
    keys = [(c.EXPERIMENT, c.digest()) for c in cells]
    assert len(keys) == len(set(keys))
    s000, r004, s004 = _smoke_grids()
    expected = [*s000.cells(), *s000.seed_cells(), *s000.resolution_cells(), *s000.baseline_resolution_cells(), *r004.cells(),
                *r004.resolution_cells(), *s004.cells(), *s004.ablation_cells()]
    assert set(keys) == {(c.EXPERIMENT, c.digest()) for c in expected}
    assert {c.EXPERIMENT for c in cells} == {"seg000", "rec004", "seg004"}
    assert grid.describe(cells[0]) == "seg000 proposed k=0 64×32 seed 0"  # the most telling cell first
    assert all(c.profile == "smoke" for c in cells)
    names = [grid.describe(c) for c in cells]
    assert "seg000 proposed k=0 128×64 seed 0" in names  # the resolution studies
    assert "rec004 synthetic dr aug=off 96×64 seed 0" in names
    assert "seg004 synthetic no branch + ASPP seed 0" in names  # the ablation
    spread = s000.seed_cells()  # the spread study: every model again with other training seeds
    assert spread and {c.model for c in spread} == set(s000.models) and s000.seed not in {c.seed for c in spread}
    assert {tuple(c.input_size) for c in s000.resolution_cells()} == {(128, 64)}
    assert {c.model for c in s000.resolution_cells()} == {"proposed"}
    assert s000.baseline_resolution_cells() == []  # the baselines' larger size costs too much for the smoke book
    larger_baselines = Seg000GridConfig.from_profile("smoke", baseline_resolutions=[[128, 64]]).baseline_resolution_cells()
    assert {(c.model, tuple(c.input_size), c.dilation) for c in larger_baselines} == {
        (m, (128, 64), k) for m in s000.models if m != "proposed" for k in s000.seed_dilations}
    assert Seg000GridConfig.from_profile("paper").resolution_cells() == []
    assert Seg000GridConfig.from_profile("smoke", models=["unet"]).resolution_cells() == []


def test_study_cells_schedule_the_converged_grid_by_the_questions_left_open(isolated):
    from defectlib.experiments.rec004 import Rec004GridConfig
    from defectlib.experiments.seg004 import Seg004GridConfig

    cells = grid.study_cells("converged")
    position = {(c.EXPERIMENT, c.digest()): i for i, c in enumerate(cells)}
    at = lambda c: position[(c.EXPERIMENT, c.digest())]  # noqa: E731
    recognition = Rec004GridConfig.from_profile("converged").cells()  # the main grid, not the resolution study
    segmentation = Seg004GridConfig.from_profile("converged").cells()
    classifier = [c for c in recognition if c.method == "resnet50" and c.augment]
    s000 = Seg000GridConfig.from_profile("converged")
    baselines = [c for c in s000.cells() if c.model != "proposed" and c.dilation in s000.seed_dilations]
    assert len(classifier) == 2 and baselines
    for c in classifier:  # the costliest recognition cell: after the first baselines and its dataset's other cells
        assert c.pairs_per_batch == 8
        assert at(c) > max(map(at, baselines))
        assert at(c) > max(at(o) for o in recognition if o.dataset == c.dataset and o != c)
    # seed 004's proposed methods on MagneticTile come right after the first baselines at the larger size
    larger = s000.baseline_resolution_cells()
    lead = next(c for c in larger if c.model == "deeplabv3plus" and c.dilation == s000.seed_dilations[0])
    proposed_mt = [c for c in recognition if c.dataset == "magnetictile" and c.method == "dr" and not c.augment]
    proposed_mt += [c for c in segmentation if c.dataset == "magnetictile" and c.model == "improved"]
    assert len(proposed_mt) == 2
    assert max(map(at, baselines)) < at(lead) == min(map(at, proposed_mt)) - 1
    assert max(map(at, proposed_mt)) < min(at(c) for c in recognition + segmentation
                                           if c.dataset == "magnetictile" and c not in proposed_mt)
    kolektor = next(c for c in classifier if c.dataset == "kolektorsdd")
    biggest = [c for c in s000.resolution_cells() if c.input_size == [1408, 512]]
    assert len(biggest) == len(s000.dilations) and max(map(at, proposed_mt)) < min(map(at, biggest))
    assert max(map(at, biggest)) < at(kolektor)  # the paper's own size answers seed 000 before the costliest cells
    # U-Net, which needs no larger size to reach its bar, comes at it after the spread study
    unet_larger = [c for c in larger if c.model == "unet"]
    assert unet_larger and min(map(at, unet_larger)) > max(map(at, s000.seed_cells()))


def _seg000_cells():
    return [Seg000Config.from_profile("smoke", dilation=0), Seg000Config.from_profile("smoke", dilation=9)]


def test_run_worker_and_grid_status_over_fold_tasks(isolated, monkeypatch):
    monkeypatch.setattr(seg000, "_train_fold", fake_fold)
    first, second = _seg000_cells()
    status = grid.grid_status([first, second])
    assert status["state"].tolist() == ["pending", "pending"] and status["hours_left"].isna().all()
    assert list(status.columns) == ["cell", "experiment", "key", "folds", "saved", "running", "state", "cpu_hours",
                                    "hours_left"]

    lines = []
    held = common.lock_path(common.cell_run(first), "fold1")
    with FileLock(held):  # another worker is training the first cell's fold 1
        counts = grid.run_worker([first, second], progress=False, log=lines.append)
        assert counts == {"trained": 5, "busy": 1, "failed": 0, "deferred": 0, "finished": 1}
        status = grid.grid_status([first, second]).set_index("cell")
        row = status.loc[grid.describe(first)]
        assert (row["state"], row["saved"], row["running"]) == ("running", 2, 1)
        assert row["cpu_hours"] == pytest.approx(2 * 1.5 / 3600)
        # estimated from the saved folds of cells of the same network, data and length
        assert row["hours_left"] == pytest.approx(1.5 / 3600)
        assert status.loc[grid.describe(second), "state"] == "done"
    assert f"{grid.describe(first)}: fold 1 is being trained by another process" in lines
    assert any(line.startswith(grid.describe(second)) and "finished" in line for line in lines)

    assert grid.grid_status([first])["state"].tolist() == ["started"]
    assert grid.run_worker([first, second], progress=False, log=lines.append) == {"trained": 1, "busy": 0, "failed": 0,
                                                                                   "deferred": 0, "finished": 1}
    status = grid.grid_status([first, second])
    assert status["state"].tolist() == ["done", "done"] and (status["saved"] == 3).all()
    assert (status["hours_left"] == 0).all()
    assert grid.run_worker([first, second], progress=False, log=lines.append) == {"trained": 0, "busy": 0, "failed": 0,
                                                                                   "deferred": 0, "finished": 0}
    result = common.cell_run(first).load()
    assert result.metrics["failed_folds"] == [] and result.provenance["wall_time_s"] == pytest.approx(4.5)


def test_a_failing_fold_is_reported_and_the_worker_goes_on(isolated, monkeypatch):
    def flaky(cfg, data, current, **kw):
        if cfg.dilation == 0 and data.fold == 1:
            raise FloatingPointError("non-finite loss at step 3")
        return fake_fold(cfg, data, current, **kw)

    monkeypatch.setattr(seg000, "_train_fold", flaky)
    first, second = _seg000_cells()
    lines = []
    counts = grid.run_worker([first, second], progress=False, log=lines.append)
    assert counts == {"trained": 5, "busy": 0, "failed": 1, "deferred": 0, "finished": 1}
    assert f"{grid.describe(first)}: fold 1 FAILED: FloatingPointError: non-finite loss at step 3" in lines
    assert grid.grid_status([first, second])["state"].tolist() == ["started", "done"]


def test_a_deadline_leaves_the_folds_that_would_not_end_before_it(isolated, monkeypatch):
    import time

    monkeypatch.setattr(seg000, "_train_fold", fake_fold)
    first, second = _seg000_cells()
    keys = [common.cell_run(c).key for c in (first, second)]
    lines = []
    hours = {keys[0]: 1.0, keys[1]: 0.01}  # the first cell's folds would end after the deadline
    counts = grid.run_worker([first, second], progress=False, log=lines.append, deadline=time.time() + 3600,
                             fold_hours=hours)
    assert counts == {"trained": 3, "busy": 0, "failed": 0, "deferred": 3, "finished": 1}
    assert grid.grid_status([first, second])["state"].tolist() == ["pending", "done"]
    assert any(line.startswith(f"{grid.describe(first)}: fold 0 left for later (about 1.00 h") for line in lines)
    # the margin: a fold of 0.9 h does not fit in an hour either; a cell without an estimate is not started
    assert grid.run_worker([first], progress=False, log=lines.append, deadline=time.time() + 3600,
                           fold_hours={keys[0]: 0.9})["deferred"] == 3
    assert grid.run_worker([first], progress=False, log=lines.append, deadline=time.time() + 3600,
                           fold_hours={})["deferred"] == 3
    counts = grid.run_worker([first], progress=False, log=lines.append, deadline=time.time() + 3600,
                             fold_hours={keys[0]: 0.5})
    assert counts["trained"] == 3 and counts["finished"] == 1


def test_a_deadline_worker_re_estimates_after_every_saved_fold(isolated, monkeypatch):
    import time

    monkeypatch.setattr(seg000, "_train_fold", fake_fold)
    first, second = _seg000_cells()
    keys = [common.cell_run(c).key for c in (first, second)]
    calls = []

    def estimate():  # the second cell has no estimate until a fold has been saved
        calls.append(len(calls))
        return {keys[0]: 0.01} if len(calls) == 1 else {keys[0]: 0.01, keys[1]: 0.01}

    counts = grid.run_worker([first, second], progress=False, log=lambda _: None, deadline=time.time() + 3600,
                             fold_hours=estimate)
    assert counts == {"trained": 6, "busy": 0, "failed": 0, "deferred": 0, "finished": 2}
    assert len(calls) == 1 + 6


def test_a_deadline_worker_counts_what_a_fold_s_checkpoints_hold(isolated, monkeypatch, capsys):
    import time

    import torch

    monkeypatch.setattr(seg000, "_train_fold", fake_fold)
    first, _ = _seg000_cells()
    current = common.cell_run(first)
    assert common.checkpoint_hours(current, 1) == 0.0
    folder = common.checkpoint_dir(current, 1)
    folder.mkdir(parents=True)
    # two stages' checkpoints: 1.5 h of a 2 h fold are done; a torn file counts nothing
    torch.save({"step": 10, "seconds": 3600.0}, folder / "segmentation.pt")
    torch.save({"step": 5, "seconds": 1800.0}, folder / "classifier.pt")
    (folder / "classifier-restart1.pt").write_bytes(b"torn")
    assert common.checkpoint_hours(current, 1) == pytest.approx(1.5)
    assert grid.held_hours([first, _]) == pytest.approx([1.5, 0.0])
    assert first in grid.study_cells("smoke")
    from defectlib.cli import main

    assert main(["grid", "status", "--profile", "smoke", "--experiment", "seg000"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "hours left: less the 1.5 training hours that interrupted folds' checkpoints hold")
    lines = []
    counts = grid.run_worker([first], progress=False, log=lines.append, deadline=time.time() + 3600,
                             fold_hours={current.key: 2.0})
    assert counts["trained"] == 1 and counts["deferred"] == 2  # only fold 1 fits: 0.5 h left of it
    assert any(line.startswith(f"{grid.describe(first)}: fold 0 left for later (about 2.00 h") for line in lines)
    assert not folder.exists()  # a saved fold's checkpoints are removed
    assert grid.held_hours([first]) == [0.0]
    # checkpoints that hold nearly all of a long fold still leave a share of it to come
    folder = common.checkpoint_dir(current, 2)
    folder.mkdir(parents=True)
    torch.save({"seconds": 19.99 * 3600}, folder / "segmentation.pt")
    counts = grid.run_worker([first], progress=False, log=lines.append, deadline=time.time() + 3600,
                             fold_hours={current.key: 20.0})  # 5 % of it: 1 h, over the margin
    assert counts["deferred"] == 2 and lines[-1].startswith(f"{grid.describe(first)}: fold 2 left for later (about 1.00 h")
    counts = grid.run_worker([first], progress=False, log=lines.append, deadline=time.time() + 3600,
                             fold_hours={current.key: 10.0})
    assert counts["trained"] == 1 and f"{grid.describe(first)}: fold 2 saved" in lines


def test_grid_until_takes_a_time_ahead_and_refuses_one_past(isolated, capsys):
    from datetime import datetime, timedelta

    from defectlib import grid_cli
    from defectlib.cli import main

    ahead = datetime.now() + timedelta(hours=2)
    assert grid_cli._deadline(ahead.isoformat(timespec="seconds")) == pytest.approx(ahead.timestamp(), abs=1)
    # a clock time already past today is the same time tomorrow (a session that ends after midnight)
    for hours in (2, -2):
        clock = (datetime.now() + timedelta(hours=hours)).replace(second=0, microsecond=0)
        until = grid_cli._deadline(clock.strftime("%H:%M"))
        assert 0 < until - time.time() <= 24 * 3600
        assert datetime.fromtimestamp(until).strftime("%H:%M") == clock.strftime("%H:%M")
        assert until == pytest.approx(clock.timestamp() + (24 * 3600 if hours < 0 else 0), abs=1)
    for bad, message in (("7pm", "--until takes HH:MM or an ISO date and time, got '7pm'"),
                         ((datetime.now() - timedelta(hours=1)).isoformat(timespec="seconds"), "already past")):
        with pytest.raises(SystemExit) as stop:
            main(["grid", "run", "--profile", "smoke", "--until", bad])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    later = (datetime.now() + timedelta(hours=1)).isoformat(timespec="seconds")
    assert main(["grid", "run", "--profile", "smoke", "--executor", "ray", "--until", later]) == 2
    assert "--until works with the local executor only" in capsys.readouterr().err
    # nothing saved and no bench: no fold of the smoke grid has an estimate, so none is started
    assert main(["grid", "run", "--profile", "smoke", "--experiment", "seg000", "--quiet", "--until", later]) == 0
    n_folds = sum(c.n_folds for c in grid.study_cells("smoke") if c.EXPERIMENT == "seg000")
    assert f"0 folds trained, 0 left to other workers, 0 cells finished, {n_folds} folds left for after the deadline" \
        in capsys.readouterr().out


@pytest.mark.slow
def test_run_worker_trains_the_first_smoke_cell_for_real(isolated):
    cell = grid.study_cells("smoke")[0]
    counts = grid.run_worker([cell], progress=False, log=lambda line: None)
    assert counts == {"trained": 3, "busy": 0, "failed": 0, "deferred": 0, "finished": 1}
    status = grid.grid_status([cell]).iloc[0]
    assert status["state"] == "done" and status["cpu_hours"] > 0 and status["hours_left"] == 0
    result = common.cell_run(cell).load()
    assert {"f1", "ap", "map_decision", "fold_checks", "failed_folds"} <= set(result.metrics)
    assert not (common.checkpoint_dir(common.cell_run(cell), 0)).exists()


def test_grid_status_cli_on_the_smoke_profile(isolated, capsys):
    from defectlib.cli import main

    cells = grid.study_cells("smoke")
    assert main(["grid", "status", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out.splitlines()
    n_folds = sum(c.n_folds for c in cells)
    assert out[-1].startswith(f"grid smoke: 0 of {len(cells)} cells done, 0 of {n_folds} folds saved")
    assert sum(line.startswith("pending") for line in out) == len(cells) == len(out) - 1
    assert main(["grid", "status", "--profile", "smoke", "--experiment", "rec004"]) == 0
    out = capsys.readouterr().out.splitlines()
    n_rec004 = sum(c.EXPERIMENT == "rec004" for c in cells)
    assert all("rec004" in line for line in out[:-1]) and len(out) - 1 == n_rec004
    assert out[-1].startswith(f"grid smoke: 0 of {n_rec004} cells done")


@pytest.mark.parametrize("module", [common, plots_common])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_area_bins_cover_each_pixel_count_once_and_reject_edges_out_of_order():
    bins = common.area_bins((1, 100, 300, float("inf")))
    assert [label for *_, label in bins] == ["1–99", "100–299", "≥300"]
    for area in (1, 99, 100, 299, 300, 10**6):
        assert sum(low <= area < high for low, high, _ in bins) == 1
    for bad in ((1,), (1, 100, 100), (300, 100)):
        with pytest.raises(ValueError, match="increasing edges"):
            common.area_bins(bad)


def test_span_prints_one_value_when_both_ends_print_alike():
    assert common.span([78, 79]) == "78–79"
    assert common.span([5, 5]) == "5"
    assert common.span([100 / 79, 100 / 78], "{:.1f}") == "1.3"
    assert common.span([100 / 11, 100 / 10], "{:.1f}") == "9.1–10.0"
