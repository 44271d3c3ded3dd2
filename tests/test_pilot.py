"""defectlib.experiments.pilot: a recipe tried on one fold's validation images, never its test images."""

from __future__ import annotations

import numpy as np
import pytest

from defectlib.cli import main
from defectlib.experiments import rec004
from defectlib.experiments.common import cell_run, fold_data, train_one_fold
from defectlib.experiments.rec004 import run_grid
from defectlib.experiments.grid import EXPERIMENTS
from defectlib.experiments.pilot import compare_longer, longer_schedules, pilot_fold, published_pilots, read_curves
from defectlib.experiments.rec004 import Rec004Config


def test_a_pilot_of_a_grid_config_repeats_the_grid_fold_and_scores_only_validation_images(isolated):
    cfg = Rec004Config.from_profile("smoke", steps=4, eval_every=2)
    assert train_one_fold(cfg, EXPERIMENTS["rec004"].train_fold(), 1, progress=False) == "trained"
    grid_artifact = cell_run(cfg).path / "artifacts" / "fold1.npz"

    pilot = pilot_fold(cfg, 1, progress=False)
    assert pilot.run.path.is_relative_to(isolated / "cache" / "pilots")
    assert sorted(p.name for p in (cell_run(cfg).path / "parts").iterdir()) == ["fold1.csv", "fold1.json"]
    # the same split, seeding and training: the validation curve and the losses are the grid fold's, bit for bit
    with np.load(grid_artifact) as grid, np.load(pilot.run.path / "artifacts" / "fold1.npz") as tried:
        for name in ("train_losses", "train_eval_step", "train_eval_ap", "train_eval_std"):
            np.testing.assert_array_equal(grid[name], tried[name])
    assert pilot.curves["step"].tolist() == [2, 4]
    assert pilot.curves["ap"].tolist() == read_curves(grid_artifact)["ap"].tolist()
    # scored: the fold's validation images, none of its test images
    data = fold_data(cfg, 1)
    scored = set(pilot.samples["sample_id"])
    assert scored == set(data.val["sample_id"]) and not scored & set(data.test["sample_id"])
    assert pilot.metrics["n"] == len(data.val) and "per_fold" not in pilot.metrics
    assert not list((isolated / "cache" / "pilots").rglob("*.pt"))  # checkpoints removed once saved


def test_a_finished_pilot_is_read_back_not_trained_again(isolated, monkeypatch):
    cfg = Rec004Config.from_profile("smoke", steps=2, eval_every=1)
    first = pilot_fold(cfg, 0, progress=False)

    def untouchable(*args, **kwargs):
        raise AssertionError("a finished pilot was trained again")

    monkeypatch.setattr(rec004, "_train_fold", untouchable)
    again = pilot_fold(cfg, 0, progress=False)
    assert again.curves.equals(first.curves) and again.metrics == first.metrics
    with pytest.raises(AssertionError, match="trained again"):
        pilot_fold(Rec004Config.from_profile("smoke", steps=3, eval_every=1), 0, progress=False)  # another recipe


def test_a_published_pilot_is_read_back_with_the_results_and_paired_with_its_cell(isolated, capsys):
    cfg = Rec004Config.from_profile("smoke", steps=2, eval_every=1)
    assert train_one_fold(cfg, EXPERIMENTS["rec004"].train_fold(), 0, progress=False) == "trained"
    assert published_pilots("rec004") == []
    assert main(["grid", "pilot", "--profile", "smoke", "--experiment", "rec004", "--fold", "1", "--quiet",
                 "--set", "steps=3", "eval_every=1", "--publish"]) == 0
    assert "published:" in capsys.readouterr().out
    published = published_pilots("rec004")
    assert len(published) == 1
    pilot = published[0]
    assert pilot.path.is_relative_to(isolated / "results" / "pilots" / "rec004")
    assert pilot.provenance["pilot"] == {"fold": 1, "scored": "validation images"}
    assert pilot.config.steps == 3 and set(pilot.samples["sample_id"]) == set(fold_data(cfg, 1).val["sample_id"])
    assert sorted(p.name for p in pilot.path.rglob("*") if p.is_file()) == [
        "fold1.csv", "fold1.json", "fold1.npz", "metrics.json", "provenance.json", "samples.csv"]  # no checkpoint
    assert read_curves(pilot.path / "artifacts" / "fold1.npz")["step"].tolist() == [1, 2, 3]
    # the pilot is the cell's recipe with more steps: paired with the finished cell, not with another recipe
    cell = run_grid([cfg], compute=True)[0]
    other = run_grid([Rec004Config.from_profile("smoke", steps=2, eval_every=1, lr=3e-4)], compute=True)[0]
    assert [(c.key, p.key) for c, p in longer_schedules([cell, other], published)] == [(cell.key, pilot.key)]
    # compared on the pilot's fold: both curves, the cell's config, and a verdict from their last evaluations
    [item] = compare_longer([cell, other], published, curves=rec004.training_curves, name=lambda r: "DR")
    assert (item.fold, item.cell_steps, item.pilot_steps, item.config) == (1, 2, 3, cfg)
    assert item.cell_curve["train_eval_step"].tolist() == [1, 2]
    assert item.pilot_curve["train_eval_step"].tolist() == [1, 2, 3]
    cell_ap, pilot_ap = item.final("ap")
    assert (cell_ap, pilot_ap) == (item.cell_curve["train_eval_ap"][-1], item.pilot_curve["train_eval_ap"][-1])
    assert ("needs more steps" in item.verdict({"ap": "AP"})) == (pilot_ap > cell_ap)


def test_pilot_command_prints_the_curves_and_refuses_bad_settings(isolated, capsys):
    assert main(["grid", "pilot", "--profile", "smoke", "--experiment", "rec004", "--fold", "2", "--quiet",
                 "--set", "steps=2", "eval_every=1", "lr=3e-4"]) == 0
    out = capsys.readouterr().out
    assert "validation images of fold 2" in out and "pilot smoke-" in out
    assert out.splitlines()[0].split()[:3] == ["stage", "step", "loss"]

    assert main(["grid", "pilot", "--profile", "smoke", "--experiment", "rec004", "--set", "stepz=2"]) == 2
    assert "unknown parameter(s) stepz" in capsys.readouterr().err
    assert main(["grid", "pilot", "--profile", "smoke", "--experiment", "rec004", "--fold", "9"]) == 2
    assert "--fold 9" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["grid", "pilot", "--profile", "smoke", "--experiment", "rec004", "--set", "steps"])
    assert exit_info.value.code == 2
