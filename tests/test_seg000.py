"""Seed 000's experiment on synthetic data: configs, a cached grid cell, galleries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from defectlib.data import load_samples
from defectlib.data.dataset import SurfaceDataset
from defectlib.errors import ConfigError
from defectlib.experiments import seg000
from defectlib.experiments.seg000 import GALLERY_CATEGORIES, Seg000Config, Seg000GridConfig
from defectlib.models import DefectClassifier, build_segnet
from defectlib.seeding import seed_everything
from defectlib.experiments.common import FoldOutcome
from defectlib.training import Schedule, train_classifier, train_segmentation

from helpers import interrupt_fold_once


def test_profiles_follow_the_paper_where_they_should():
    paper = Seg000Config.from_profile("paper")
    assert paper.input_size == [1408, 512] and paper.lr_seg == 0.01 and paper.batch_size == 1
    assert paper.threshold == 0.9 and paper.dataset == "kolektorsdd" and paper.n_folds == 3
    assert (paper.seg_epochs, paper.clf_epochs) == (50, 25)
    converged = Seg000Config.from_profile("converged", model="unet", dilation=13)
    assert (converged.model, converged.dilation, converged.dataset) == ("unet", 13, "kolektorsdd")
    assert converged.input_size == [352, 128] and converged.map_threshold == 0.5 and converged.warmup == 0.1


@pytest.mark.parametrize("bad", [{"model": "resnet"}, {"dilation": 4}, {"dilation": "9"}, {"lr": 0.1},
                                 {"map_threshold": 1.0}, {"amp": True}, {"seg_steps": 0}])
def test_bad_parameters_fail_with_a_clear_message(bad):
    with pytest.raises(ConfigError, match="seg000"):
        Seg000Config.from_profile("converged", **bad)


def test_converged_profile_has_a_recipe_per_network_in_float32():
    cells = {c.model: c for c in seg000.grid_configs("converged", dilations=(9,))}
    # the recipe tables (chosen on validation folds; their values move as recipes are re-checked)
    assert {m: c.lr_seg for m, c in cells.items()} == seg000.SEG_LEARNING_RATES
    assert {m: c.seg_steps for m, c in cells.items()} == seg000.SEG_STEPS
    assert set(seg000.SEG_LEARNING_RATES) == set(seg000.SEG_STEPS) == set(seg000.MODELS)
    assert cells["deeplabv3plus"].lr_seg < cells["proposed"].lr_seg  # DeepLabv3+ generalises worse at 0.01
    assert {(c.clf_steps, c.lr_clf, c.eval_every) for c in cells.values()} == {(1500, 1e-3, 250)}
    # "per-model" is the profile's value only: an explicit value wins, and enters the run key
    explicit = Seg000Config.from_profile("converged", model="deeplabv3plus", lr_seg=5e-3, seg_steps=10)
    assert (explicit.lr_seg, explicit.seg_steps) == (5e-3, 10)
    assert explicit.digest() != cells["deeplabv3plus"].digest()
    assert "amp" not in cells["unet"].to_dict()  # no bfloat16 field: every profile trains in float32
    assert {"val_fraction", "eval_every", "warmup", "map_threshold"} <= set(cells["unet"].to_dict())


def test_epochs_define_steps_from_the_defect_free_count():
    cfg = Seg000Config.from_profile("paper")
    assert cfg.steps(cfg.seg_epochs, cfg.seg_steps, n_negative=231) == 50 * 2 * 231
    converged = Seg000Config.from_profile("converged")
    assert converged.steps(converged.seg_epochs, converged.seg_steps, n_negative=231) == seg000.SEG_STEPS["proposed"]


def test_grid_has_every_model_and_dilation():
    grid = Seg000GridConfig.from_profile("converged")
    cells = grid.cells()
    assert len(cells) == 15
    assert {(c.model, c.dilation) for c in cells} == {(m, k) for m in seg000.MODELS for k in seg000.DILATIONS}
    assert not grid.compute and Seg000GridConfig.from_profile("smoke").compute  # the book reads converged cells
    assert grid.resolutions == seg000.RESOLUTIONS
    high = grid.resolution_cells()
    assert len(high) == 5 * len(seg000.RESOLUTIONS)
    assert {(c.model, tuple(c.input_size), c.dilation) for c in high} == {
        ("proposed", tuple(size), k) for size in seg000.RESOLUTIONS for k in seg000.DILATIONS}
    assert [c.input_size for c in high[:5]] == [seg000.RESOLUTIONS[0]] * 5  # size by size
    baselines = grid.baseline_resolution_cells()  # the baselines at the larger size, at the spread's dilations
    assert [(c.model, c.dilation) for c in baselines] == [
        (m, k) for k in seg000.SEED_DILATIONS for m in seg000.MODELS if m != "proposed"]
    assert {tuple(c.input_size) for c in baselines} == {tuple(s) for s in seg000.BASELINE_RESOLUTIONS}
    assert not {c.digest() for c in baselines} & {c.digest() for c in grid.cells() + high}
    assert Seg000GridConfig.from_profile("paper").baseline_resolution_cells() == []
    assert Seg000GridConfig.from_profile("paper").resolution_cells() == []
    spread = grid.seed_cells()
    assert spread and {c.dilation for c in spread} == set(grid.seed_dilations) == set(seg000.SEED_DILATIONS)
    assert grid.seed not in {c.seed for c in spread} and {c.model for c in spread} == set(seg000.MODELS)
    smoke = Seg000GridConfig.from_profile("smoke")
    assert {(c.model, c.dilation) for c in smoke.cells()} == {(m, k) for m in smoke.models for k in smoke.dilations}


def test_run_grid_without_compute_reads_only_cached_cells(isolated, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("run_grid(compute=False) must not train")

    monkeypatch.setattr(seg000, "_train_fold", no_training)
    assert seg000.run_grid(_small_cells(), compute=False, progress=False) == []


def _small_cells():
    return [Seg000Config.from_profile("smoke", dilation=0, seg_steps=4, clf_steps=2)]


@pytest.mark.slow
def test_proposed_network_learns_synthetic_defects(isolated):
    """A tiny two-stage training with the real networks: both losses go down."""
    table = load_samples("synthetic")
    data = SurfaceDataset(table, size=(64, 32), dilation=3)
    seed_everything(0)
    segnet = build_segnet("proposed")
    constant = Schedule(80, 1e-3, warmup=0.0, final=1.0)  # a constant rate, as the paper prints
    seg = train_segmentation(segnet, data, schedule=constant, seed=0, progress=False).losses
    assert np.mean(seg[-10:]) < 0.5 * np.mean(seg[:10])
    before = {k: v.clone() for k, v in segnet.state_dict().items()}
    classifier = DefectClassifier(in_channels=segnet.feature_channels + 1)
    clf = train_classifier(segnet, classifier, data, schedule=constant, seed=0, progress=False).losses
    assert np.mean(clf[-10:]) < np.mean(clf[:10])
    assert all(torch.equal(before[k], v) for k, v in segnet.state_dict().items())


@pytest.mark.slow
def test_a_grid_cell_runs_resumes_and_keeps_its_gallery(isolated, monkeypatch):
    cfg = Seg000Config.from_profile("smoke", seg_steps=10, clf_steps=6, eval_every=5)
    calls = interrupt_fold_once(monkeypatch, seg000)
    with pytest.raises(KeyboardInterrupt):
        seg000.run(cfg, progress=False)
    result = seg000.run(cfg, progress=False)
    assert calls == [0, 1, 1, 2]  # fold 0 was not trained again
    samples = result.samples
    assert sorted(samples["fold"].unique()) == [0, 1, 2] and samples["sample_id"].is_unique
    assert samples["score"].between(0, 1).all() and samples["seg_max"].between(0, 1).all()
    m = result.metrics
    assert {"f1", "precision", "recall", "fp", "fn", "ap", "per_fold", "seg_max_ap", "map_decision",
            "fold_checks", "failed_folds"} <= set(m)
    # the second decision: the segmentation map's maximum at map_threshold
    labels, called = samples["label"], samples["seg_max"] >= cfg.map_threshold
    assert m["map_decision"]["fp"] == int((called & (labels == 0)).sum())
    assert m["map_decision"]["fn"] == int((~called & (labels == 1)).sum())
    for fold, checks in m["fold_checks"].items():
        assert {"constant_output", "test_score_std", "val_score_std", "val_ap", "val_seg_max_ap"} <= set(checks)
        assert checks["test_score_std"] == pytest.approx(samples.loc[samples["fold"] == int(fold), "score"].std())
    assert m["failed_folds"] == sorted(int(f) for f, c in m["fold_checks"].items() if c["constant_output"])
    curves = seg000.training_curves(result)[0]
    assert curves["seg_losses"].shape == (10,) and curves["clf_losses"].shape == (6,)
    assert curves["seg_eval_step"].tolist() == [5.0, 10.0] and curves["clf_eval_step"].tolist() == [5.0, 6.0]
    assert {"seg_eval_ap", "seg_eval_std", "clf_eval_ap", "clf_eval_fp", "clf_eval_fn"} <= set(curves)
    shown = sum(len(seg000.gallery(result, c)[0]) for c in GALLERY_CATEGORIES)
    assert shown > 0
    entries, images, maps = seg000.gallery(result, "true negatives")
    assert len(entries) == len(images) == len(maps)
    assert (entries["label"] == 0).all() and (entries["score"] < cfg.threshold).all()
    kept = list(entries["sample_id"])
    views, thumbs, _ = seg000.stored_views([result], kept[::-1] + ["no-such-image"])
    assert list(views["sample_id"]) == kept[::-1] and len(thumbs) == len(kept)  # in the order asked, unknown left out
    errors = seg000.image_errors([result, result])
    assert len(errors) == len(samples) and (errors["runs"] == 2).all()
    wrong = (samples["score"] >= cfg.threshold) != (samples["label"] == 1)
    assert errors["wrong"].sum() == 2 * wrong.sum() and errors["wrong"].is_monotonic_decreasing
    defective = list(samples.loc[samples["label"] == 1, "sample_id"][:2])
    crops = seg000.defect_crops(defective + list(samples.loc[samples["label"] == 0, "sample_id"][:1]), dataset="synthetic")
    assert [str(c["sample_id"]) for c in crops] == defective and all(c["masks"][0].any() for c in crops)
    table = seg000.grid_table([result])
    assert table.loc[0, "map_fp"] == m["map_decision"]["fp"] and table.loc[0, "failed_folds"] == len(m["failed_folds"])
    # A finished cell is read from the cache, not trained again.
    assert seg000.run(cfg, progress=False).key == result.key and calls == [0, 1, 1, 2]
    assert [r.key for r in seg000.run_grid([cfg], compute=False, progress=False)] == [result.key]


class Stop(Exception):
    pass


@pytest.mark.slow
def test_a_cell_stopped_mid_fold_resumes_from_its_checkpoint_to_the_same_numbers(tmp_path, monkeypatch):
    """Stopped in fold 1's segmentation stage, the cell resumes there (fold 0 is not trained
    again) and ends with the numbers of a run that was never stopped."""
    from defectlib.experiments import common
    from defectlib.training import loop

    cfg = Seg000Config.from_profile("smoke", seg_steps=6, clf_steps=4, eval_every=3)

    def use(root):
        monkeypatch.setenv("DEFECTLIB_RESULTS", str(tmp_path / root / "results"))
        monkeypatch.setenv("DEFECTLIB_CACHE", str(tmp_path / root / "cache"))

    use("uninterrupted")
    reference = seg000.run(cfg, progress=False)

    use("interrupted")
    monkeypatch.setattr(loop.Checkpoint, "due", lambda self: True)  # a checkpoint after every step
    saves = []
    armed = [True]
    original_save = loop.Checkpoint.save

    def save(self, state):
        original_save(self, state)
        saves.append((self.path.parent.name, self.path.name, state["step"]))
        if armed[0] and len(saves) == 6 + 4 + 3:  # fold 0's 6 + 4 steps, then 3 steps of fold 1's segmentation
            armed[0] = False
            raise Stop

    monkeypatch.setattr(loop.Checkpoint, "save", save)
    with pytest.raises(Stop):
        seg000.run(cfg, progress=False)
    current = common.cell_run(cfg)
    assert current.has_part("fold0") and not current.has_part("fold1")
    stopped = common.checkpoint_dir(current, 1) / "segmentation.pt"
    assert torch.load(stopped, weights_only=False)["step"] == 3
    assert not common.checkpoint_dir(current, 0).exists()  # a saved fold's checkpoints are gone

    calls = []
    original_fold = seg000._train_fold
    monkeypatch.setattr(seg000, "_train_fold", lambda cfg, data, current, **kw: (calls.append(data.fold),
                                                                                 original_fold(cfg, data, current, **kw))[1])
    saves.clear()
    result = seg000.run(cfg, progress=False)
    assert calls == [1, 2]
    # fold 1's segmentation continued at step 4 (steps 1-3 came from the checkpoint)
    assert saves[0] == ("fold1", "segmentation.pt", 4)
    assert not common.checkpoint_dir(current, 1).exists()
    a = reference.samples.sort_values("sample_id", ignore_index=True)
    b = result.samples.sort_values("sample_id", ignore_index=True)
    pd.testing.assert_frame_equal(a.drop(columns=["score", "seg_max"]), b.drop(columns=["score", "seg_max"]))
    np.testing.assert_allclose(b["score"], a["score"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(b["seg_max"], a["seg_max"], rtol=1e-6, atol=1e-7)
    for key in ("f1", "precision", "recall", "fp", "fn", "ap", "seg_max_ap", "failed_folds"):
        assert result.metrics[key] == pytest.approx(reference.metrics[key]), key
    assert result.metrics["map_decision"] == pytest.approx(reference.metrics["map_decision"])


@pytest.mark.slow
def test_resumed_fold_matches_an_uninterrupted_one(isolated, tmp_path):
    """Each fold is seeded alone, so training fold 2 alone gives the same scores."""
    from defectlib.data.folds import ensure_folds
    from defectlib.experiments.common import fold_split
    from defectlib.results import Run
    from defectlib.seeding import seed_everything as seed

    cfg = Seg000Config.from_profile("smoke", seg_steps=8, clf_steps=4, eval_every=4)
    table = load_samples("synthetic")
    folds = ensure_folds("synthetic", table, n_folds=3, seed=0).folds_of(table)
    run = Run(cfg, {"synthetic": "x"})

    def train(fold, where):
        seed(cfg.seed)  # as train_one_fold does before every fold
        data = fold_split(table, folds, fold, val_fraction=cfg.val_fraction, seed=cfg.folds_seed)
        return seg000._train_fold(cfg, data, run, checkpoints=tmp_path / where, progress=False)

    a = train(2, "a")
    assert isinstance(a, FoldOutcome) and a.seconds > 0 and a.part["fold"].eq(2).all()
    assert (tmp_path / "a" / "segmentation.pt").is_file() and (tmp_path / "a" / "classifier.pt").is_file()
    train(0, "b")
    b = train(2, "c")
    # Same seed, same data order: equal to float rounding. Not bit-for-bit: on a 2-core Xeon one
    # run of `make test` in 4 differed in the 7th digit (oneDNN's kernels can take other paths
    # for other buffer addresses); another fold or seed moves the scores far more.
    np.testing.assert_allclose(a.part["score"].to_numpy(), b.part["score"].to_numpy(), rtol=1e-6, atol=0)
    # a fold whose checkpoints hold finished stages predicts again without training
    again = train(2, "a")
    np.testing.assert_allclose(again.part["score"].to_numpy(), a.part["score"].to_numpy(), rtol=1e-6, atol=0)
    assert again.seconds == pytest.approx(a.seconds)  # the stages' seconds come from the checkpoints


def test_resolution_figure_draws_every_network_at_every_size():
    import matplotlib

    matplotlib.use("Agg")
    from defectlib.plots import plot_resolution

    rows = [{"model": m, "input": size, "dilation": k, "fp": 1, "fn": 2, "ap": 0.9}
            for m, size, dilations in (("proposed", "352×128", (0, 5, 9)), ("proposed", "704×256", (0, 5, 9)),
                                       ("deeplabv3plus", "352×128", (0, 5, 9)), ("deeplabv3plus", "704×256", (0, 9)))
            for k in dilations]
    fig = plot_resolution(pd.DataFrame(rows), references={"paper": {"dilation": 9, "fp": 1, "fn": 1, "ap": None}})
    errors, ap = fig.axes[:2]
    labels = [line.get_label() for line in errors.lines]
    assert labels == ["proposed (lightweight), 352×128", "proposed (lightweight), 704×256",
                      "DeepLabv3+, 352×128", "DeepLabv3+, 704×256", "paper"]
    assert errors.lines[0].get_color() == errors.lines[1].get_color() != errors.lines[2].get_color()  # colour: network
    assert errors.lines[0].get_linestyle() != errors.lines[1].get_linestyle()  # style: size
    assert np.isnan(errors.lines[3].get_ydata()[1])  # a dilation the cell lacks is left out, not drawn as zero
    assert len(ap.lines) == 4  # no published AP to draw
    matplotlib.pyplot.close(fig)


def test_restarted_folds_lists_the_folds_whose_classifier_was_trained_again():
    from types import SimpleNamespace

    from defectlib.experiments.seg000 import restarted_folds

    results = [SimpleNamespace(name="a", metrics={"fold_checks": {
                   "0": {"val_ap": 0.9, "val_score_std": 0.3},
                   "2": {"val_ap": 1.0, "val_score_std": 0.31, "classifier_restarts": 1}}}),
               SimpleNamespace(name="b", metrics={"fold_checks": {"1": {"classifier_restarts": 0}}})]
    table = restarted_folds(results, lambda r: r.name)
    assert table.drop(columns=["loss", "stalled_loss", "stalled_val_ap"]).to_dict("records") == [
        {"cell": "a", "fold": 2, "restarts": 1, "val_ap": 1.0, "val_score_std": 0.31}]
    assert table[["loss", "stalled_loss", "stalled_val_ap"]].isna().all(axis=None)  # no stored curves to read
    assert restarted_folds(results[1:], lambda r: r.name).empty
    assert list(restarted_folds([], str).columns) == ["cell", "fold", "restarts", "val_ap", "val_score_std", "loss",
                                                      "stalled_loss", "stalled_val_ap"]


def test_image_errors_counts_each_images_wrong_decisions_over_runs():
    from types import SimpleNamespace

    from defectlib.experiments.seg000 import IMAGE_ERROR_COLUMNS, image_errors

    def run(scores, seg_max, threshold=0.9):
        samples = pd.DataFrame({"sample_id": ["p1", "p2", "n1"], "fold": [0, 1, 1], "label": [1, 1, 0],
                                "defect_area": [5, 9, 0], "score": scores, "seg_max": seg_max})
        return SimpleNamespace(samples=samples, provenance={"config": {"threshold": threshold, "map_threshold": 0.5}})

    table = image_errors([run([0.1, 0.95, 0.2], [0.9, 0.9, 0.1]), run([0.5, 0.3, 0.92], [0.2, 0.9, 0.7]),
                          run([0.5, 0.3, 0.2], [0.2, 0.9, 0.1], threshold=0.4)])
    rows = {r["sample_id"]: r for r in table.to_dict("records")}
    assert (rows["p1"]["wrong"], rows["p1"]["map_wrong"]) == (2, 2)  # 0.5 >= 0.4 is right in the third run
    assert (rows["p2"]["wrong"], rows["n1"]["wrong"], rows["n1"]["map_wrong"]) == (2, 1, 1)
    assert rows["p1"]["wrong_share"] == pytest.approx(2 / 3) and rows["n1"]["median_score"] == pytest.approx(0.2)
    assert list(table["sample_id"]) == ["p1", "p2", "n1"]  # most wrong first, then by the map's errors
    assert list(image_errors([]).columns) == IMAGE_ERROR_COLUMNS


def test_error_figures_draw_one_bar_pair_per_image_and_one_panel_per_fold():
    import matplotlib

    matplotlib.use("Agg")
    from defectlib.plots import plot_defect_crops, plot_image_errors, plot_score_vs_map

    errors = pd.DataFrame({"sample_id": ["a", "b", "c"], "fold": [0, 1, 2], "label": [1, 0, 1], "defect_area": [4, 0, 7],
                           "runs": [3, 3, 3], "wrong": [3, 2, 0], "map_wrong": [1, 2, 0], "wrong_share": [1, 2 / 3, 0],
                           "map_wrong_share": [1 / 3, 2 / 3, 0]})
    fig = plot_image_errors(errors, top=2)
    ax = fig.axes[0]
    assert len(ax.patches) == 4 and [t.get_text() for t in ax.get_yticklabels()] == [
        "b (defect-free, fold 1)", "a (defect, 4 px, fold 0)"]
    matplotlib.pyplot.close(fig)
    samples = errors.assign(score=[0.1, 0.95, 0.99], seg_max=[0.9, 0.2, 1.0])
    fig = plot_score_vs_map(samples, threshold=0.9)
    assert len(fig.axes) == 3
    matplotlib.pyplot.close(fig)
    crop = {"image": np.zeros((8, 6), np.uint8), "masks": np.ones((1, 8, 6), np.uint8), "sample_id": np.array("a")}
    fig = plot_defect_crops([crop, crop], columns=4)
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "a\n48 px annotated"
    matplotlib.pyplot.close(fig)
