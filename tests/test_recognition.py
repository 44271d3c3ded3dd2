"""Seed 004's recognition: DR's 7×7 output and block labels, the pair sampler and block
selection, joint augmentation, a tiny training, and the experiment (configs, a resumable
smoke cell, the small-defect and size-bin tables)."""

from __future__ import annotations

import doctest
import math
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import defectlib.data.augment as augment_module
import defectlib.experiments.rec004 as rec004
import defectlib.models.rec004 as models_module
import defectlib.training.rec004 as training_module
from defectlib.data import load_samples
from defectlib.data.augment import Augmentation
from defectlib.data.dataset import SurfaceDataset
from defectlib.errors import ConfigError
from defectlib.experiments.rec004 import Rec004Config, Rec004GridConfig
from defectlib.metrics import average_precision, tpr_tnr_acc
from defectlib.models.rec004 import BlockDetector, block_labels, image_scores, resnet50_classifier
from defectlib.results import RunResult
from defectlib.seeding import seed_everything, torch_generator
from defectlib.training import PairBatchSampler, Schedule, predict_recognition, select_blocks, train_recognition
from defectlib.training.rec004 import BLOCK_STREAM, recognition_loss

from helpers import interrupt_fold_once


class TinyBlocks(nn.Module):
    """A stand-in for DR: one stride-32 convolution, (N, 2, H/32, W/32)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 32, stride=32)

    def forward(self, x):
        return self.conv(x)


# --------------------------------------------------------------------------------------
# Models: output shape, block labels, image scores
# --------------------------------------------------------------------------------------


def test_dr_gives_a_7x7_map_of_two_scores_at_224():
    torch.manual_seed(0)
    model = BlockDetector(find_weights=False).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 224, 224))
    assert out.shape == (1, 2, 7, 7)
    assert model.pretrained is None
    with torch.no_grad():
        assert resnet50_classifier(find_weights=False).eval()(torch.rand(1, 1, 64, 64)).shape == (1, 2)


@pytest.mark.parametrize("pixel, block", [((0, 0), (0, 0)), ((31, 31), (0, 0)), ((32, 0), (1, 0)),
                                           ((40, 200), (1, 6)), ((223, 223), (6, 6)), ((100, 65), (3, 2))])
def test_a_pixel_makes_its_32x32_block_defective(pixel, block):
    mask = torch.zeros(2, 1, 224, 224)
    mask[0, 0, pixel[0], pixel[1]] = 1
    labels = block_labels(mask, (7, 7))
    assert labels.shape == (2, 7, 7) and labels.dtype == torch.long
    assert labels[0].nonzero().tolist() == [list(block)]
    assert labels[1].sum() == 0


def test_a_defect_across_a_block_border_marks_both_blocks():
    mask = torch.zeros(1, 1, 64, 64)
    mask[0, 0, 10, 30:34] = 1
    assert block_labels(mask, (2, 2))[0].tolist() == [[1, 1], [0, 0]]
    with pytest.raises(ValueError, match="N, 1, H, W"):
        block_labels(torch.zeros(1, 64, 64), (2, 2))


def test_image_score_is_the_most_defective_block():
    out = torch.zeros(2, 2, 2, 2)
    out[0, 1, 1, 0] = 3.0  # one confident defective block
    scores = image_scores(out)
    assert scores[0] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    assert scores[1] == pytest.approx(0.5)
    assert image_scores(torch.tensor([[0.0, 0.0]])).tolist() == [0.5]


# --------------------------------------------------------------------------------------
# Pair batches and block selection
# --------------------------------------------------------------------------------------

LABELS = [1, 0, 0, 1, 0, 1, 0, 0, 1, 0]  # defective: 0, 3, 5, 8


def test_pair_batches_put_a_defect_free_image_after_each_defective_one():
    sampler = PairBatchSampler(LABELS, pairs_per_batch=3, num_batches=4, generator=torch_generator(0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4
    for batch in batches:
        assert len(batch) == 6
        assert [LABELS[i] for i in batch] == [1, 0] * 3


def test_every_defective_image_once_per_pass():
    sampler = PairBatchSampler(LABELS, pairs_per_batch=2, num_batches=6, generator=torch_generator(1))
    defective = [i for batch in sampler for i in batch[::2]]
    for start in range(0, len(defective), 4):  # 12 draws = 3 passes over the 4 defective images
        assert sorted(defective[start:start + 4]) == [0, 3, 5, 8]
    partners = [i for batch in PairBatchSampler(LABELS, pairs_per_batch=50, num_batches=4,
                                                generator=torch_generator(2)) for i in batch[1::2]]
    assert set(partners) == {1, 2, 4, 6, 7, 9}  # random defect-free partners: all get drawn


def test_pair_batches_are_deterministic_given_the_generator():
    def draw(seed):
        return list(PairBatchSampler(LABELS, pairs_per_batch=2, num_batches=5, generator=torch_generator(seed)))

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


@pytest.mark.parametrize("labels, kwargs", [([1, 1], {}), ([0, 0], {}), ([1, 0], {"pairs_per_batch": 0}),
                                            ([1, 0], {"num_batches": 1.5}), ([1, 2], {})])
def test_pair_sampler_rejects_bad_input(labels, kwargs):
    with pytest.raises(ValueError):
        PairBatchSampler(labels, **{"pairs_per_batch": 1, "num_batches": 1, **kwargs})


def _blocks():
    labels = torch.zeros(4, 7, 7, dtype=torch.long)
    labels[0, 2:5, 2:5] = 1  # 9 defective blocks
    labels[2, 0, 0:2] = 1    # 2 defective blocks
    return labels


def test_block_selection_is_balanced():
    labels = _blocks()
    chosen = select_blocks(labels, torch.ones(4, dtype=torch.bool), blocks_per_class=8, generator=torch_generator(0))
    assert chosen.shape == labels.shape and chosen.dtype == torch.bool
    assert int(labels[chosen].sum()) == 8 and int((labels[chosen] == 0).sum()) == 8
    # Fewer defective blocks than asked: all of them, and as many normal ones.
    chosen = select_blocks(labels, torch.ones(4, dtype=torch.bool), blocks_per_class=16, generator=torch_generator(0))
    assert int(labels[chosen].sum()) == 11 and int((labels[chosen] == 0).sum()) == 11


def test_block_selection_skips_unusable_images_and_keeps_one_normal_block():
    labels = _blocks()
    usable = torch.tensor([False, True, True, True])  # image 0: say a defective image with an unusable mask
    chosen = select_blocks(labels, usable, blocks_per_class=8, generator=torch_generator(0))
    assert not chosen[0].any()
    assert int(labels[chosen].sum()) == 2 and int((labels[chosen] == 0).sum()) == 2
    none_defective = select_blocks(torch.zeros(2, 7, 7, dtype=torch.long), torch.ones(2, dtype=torch.bool),
                                   blocks_per_class=8, generator=torch_generator(0))
    assert int(none_defective.sum()) == 1
    a = select_blocks(labels, usable, blocks_per_class=3, generator=torch_generator(5))
    assert torch.equal(a, select_blocks(labels, usable, blocks_per_class=3, generator=torch_generator(5)))
    with pytest.raises(ValueError):
        select_blocks(labels, torch.ones(3, dtype=torch.bool), blocks_per_class=3)


def test_dr_loss_reaches_only_the_selected_blocks_of_usable_images():
    mask = torch.zeros(4, 1, 64, 64)
    mask[0, 0, 5:9, 5:9] = 1  # defective, top-left block
    label = torch.tensor([1, 0, 1, 0])  # image 2 is defective with an empty mask: unusable
    output = torch.zeros(4, 2, 2, 2, requires_grad=True)
    loss = recognition_loss(output, {"mask": mask, "label": label}, method="dr", blocks_per_class=4,
                            generator=torch_generator(0))
    loss.backward()
    touched = output.grad.abs().sum(dim=1) > 0
    assert touched[0, 0, 0] and not touched[2].any()
    assert int(touched.sum()) == 2  # one defective block and one normal block
    assert recognition_loss(torch.zeros(4, 2), {"mask": mask, "label": label}, method="resnet50",
                            blocks_per_class=4).item() == pytest.approx(math.log(2))


# --------------------------------------------------------------------------------------
# Augmentation keeps image and mask aligned
# --------------------------------------------------------------------------------------


def test_augmentation_moves_image_and_mask_together():
    image = torch.zeros(1, 64, 64)
    image[0, 12:28, 30:46] = 1.0
    mask = (image > 0).float()
    aug = Augmentation(brightness=0.0, saturation=0.0, perspective_p=1.0)
    moved = 0
    for seed in range(8):
        torch.manual_seed(seed)
        a, m = aug(image, mask)
        assert a.shape == image.shape and m.shape == mask.shape
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        bright, inside = a[0] > 0.5, m[0] > 0
        iou = (bright & inside).sum() / (bright | inside).sum()
        assert iou > 0.85, f"seed {seed}: image and mask disagree (IoU {iou:.2f})"
        moved += not torch.equal(m, mask)
    assert moved >= 6  # the transform really moves things


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dr_learns_synthetic_defects(isolated):
    """A tiny DR training on synthetic 64×64 images: the block loss goes down."""
    data = SurfaceDataset(load_samples("synthetic"), size=(64, 64))
    seed_everything(0)
    model = BlockDetector(find_weights=False)
    history = train_recognition(model, data, method="dr", schedule=Schedule(60, 1e-4, warmup=0.0),
                                weight_decay=1e-4, pairs_per_batch=2, blocks_per_class=4, seed=0, progress=False)
    losses = history.losses
    assert len(losses) == 60 and np.isfinite(losses).all()
    assert np.mean(losses[-15:]) < 0.8 * np.mean(losses[:15])


def test_training_is_deterministic_and_stops_on_a_non_finite_loss(isolated):
    data = SurfaceDataset(load_samples("synthetic"), size=(64, 64), transform=Augmentation())

    def train(method, seed=0):
        seed_everything(0)
        model = TinyBlocks() if method == "dr" else nn.Sequential(TinyBlocks(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return train_recognition(model, data, method=method, schedule=Schedule(5, 1e-3), pairs_per_batch=2,
                                 blocks_per_class=2, seed=seed, progress=False).losses, model

    for method in ("dr", "resnet50"):
        (a, _), (b, _) = train(method), train(method)
        assert a == b and len(a) == 5
        assert train(method, seed=1)[0] != a  # the seed changes the pairs (and DR's blocks)
    model = TinyBlocks()
    with torch.no_grad():
        model.conv.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"train_recognition\[dr\]: non-finite loss .* step 1 of 3"):
        train_recognition(model, data, method="dr", schedule=Schedule(3, 1e-3), pairs_per_batch=1, seed=0,
                          progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        train_recognition(model, data, method="deeplab", schedule=Schedule(3, 1e-3), pairs_per_batch=1, seed=0,
                          progress=False)
    for bad in ({"weight_decay": -1.0}, {"weight_decay": float("inf")}, {"pairs_per_batch": 0},
                {"blocks_per_class": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            train_recognition(TinyBlocks(), data, method="dr", schedule=Schedule(3, 1e-3),
                              **{"pairs_per_batch": 1, "seed": 0, "progress": False, **bad})


def test_both_methods_see_the_same_pair_batches_and_dr_its_own_block_stream(isolated, monkeypatch):
    """The comparison differs in the network and its loss only: same plan of batches, and DR's
    block selection draws from a generator of its own (seed + BLOCK_STREAM), saved in checkpoints."""
    data = SurfaceDataset(load_samples("synthetic"), size=(64, 64))
    seen = {}
    original = training_module.fit

    def spy(name, **kw):
        seen[name] = kw
        return original(name, **kw)

    monkeypatch.setattr(training_module, "fit", spy)
    seed_everything(0)
    train_recognition(TinyBlocks(), data, method="dr", schedule=Schedule(4, 1e-3), pairs_per_batch=2, seed=3,
                      progress=False)
    train_recognition(nn.Sequential(TinyBlocks(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), data, method="resnet50",
                      schedule=Schedule(4, 1e-3), pairs_per_batch=2, seed=3, progress=False)
    dr, resnet = seen["train_recognition[dr]"], seen["train_recognition[resnet50]"]
    assert dr["plan"] == resnet["plan"] and len(dr["plan"]) == 4
    expected = list(PairBatchSampler(data.table["label"].to_numpy(), pairs_per_batch=2, num_batches=4,
                                     generator=torch_generator(3)))
    assert dr["plan"] == expected
    blocks = dr["generators"]["blocks"]
    assert set(dr["generators"]) == {"blocks"}
    # the block stream was drawn from during training: its state is no longer the fresh seed's
    assert not torch.equal(blocks.get_state(), torch_generator(3 + BLOCK_STREAM).get_state())


def test_prediction_scores_every_image_in_order_and_counts_dr_block_false_positives(isolated):
    data = SurfaceDataset(load_samples("synthetic"), size=(64, 64))
    torch.manual_seed(0)
    model = TinyBlocks()
    scores = predict_recognition(model, data, batch_size=5, progress=False)
    assert list(scores.columns) == ["index", "score", "normal_blocks", "fp_blocks"]
    assert scores["index"].tolist() == list(range(len(data)))
    assert scores["score"].between(0, 1).all()
    # normal blocks: the 2×2 blocks with no mask pixel; false positives: those called defective
    with torch.no_grad():
        for i in range(0, len(data), 7):
            item = data[i]
            out = model.eval()(item["image"][None])
            normal = block_labels(item["mask"][None], (2, 2))[0] == 0
            called = torch.softmax(out, dim=1)[0, 1] >= 0.5
            assert scores.at[i, "normal_blocks"] == int(normal.sum())
            assert scores.at[i, "fp_blocks"] == int((normal & called).sum())
    assert (scores.loc[data.table["label"].to_numpy() == 0, "normal_blocks"] == 4).all()
    everything = predict_recognition(model, data, batch_size=5, threshold=0.0, progress=False)
    assert (everything["fp_blocks"] == everything["normal_blocks"]).all()  # at 0 every block is called
    assert (predict_recognition(model, data, threshold=1.01, progress=False)["fp_blocks"] == 0).all()
    # the image classifier has no blocks: no block columns
    classifier = nn.Sequential(TinyBlocks(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert list(predict_recognition(classifier, data, progress=False).columns) == ["index", "score"]
    with pytest.raises(ValueError, match="batch_size"):
        predict_recognition(model, data, batch_size=0, progress=False)


def test_block_false_positive_rate_in_the_cell_metrics():
    samples = pd.DataFrame({"fold": [0, 0, 1, 1], "label": [1, 0, 1, 0], "score": [0.9, 0.2, 0.6, 0.7],
                            "normal_blocks": [40, 49, 45, 49], "fp_blocks": [0, 0, 1, 2]})
    cfg = Rec004Config.from_profile("smoke")
    metrics = rec004.cell_metrics(cfg, samples)
    assert metrics["block_fpr"] == pytest.approx(3 / 183)
    assert metrics["per_fold"]["0"]["block_fpr"] == 0.0
    assert metrics["per_fold"]["1"]["block_fpr"] == pytest.approx(3 / 94)
    assert "block_fpr" not in rec004.cell_metrics(cfg, samples.drop(columns=["normal_blocks", "fp_blocks"]))


# --------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------


def test_profiles_and_validation():
    paper = Rec004Config.from_profile("paper")
    converged = Rec004Config.from_profile("converged", method="resnet50", augment=False)
    assert paper.input_size == [224, 224] and paper.n_folds == 5 and paper.threshold == 0.5
    assert (paper.steps, paper.pairs_per_batch, paper.eval_every) == (3000, 8, 500)
    assert (converged.method, converged.augment, converged.dataset, converged.steps, converged.pairs_per_batch,
            converged.lr, converged.eval_every) == ("resnet50", False, "magnetictile", 4000, 2, 1e-3, 200)
    assert Rec004Config.from_profile("converged", dataset="kolektorsdd").steps == rec004.STEPS["kolektorsdd"] == 1000
    assert Rec004Config.from_profile("converged", steps=7).steps == 7  # "per-dataset" only as the profile's value
    pairs = {(m, a): Rec004Config.from_profile("converged", method=m, augment=a).pairs_per_batch
             for m in rec004.METHODS for a in rec004.AUGMENTS}
    assert pairs == {("dr", True): 2, ("dr", False): 2, ("resnet50", True): 8, ("resnet50", False): 2}
    assert Rec004Config.from_profile("converged", method="resnet50", pairs_per_batch=3).pairs_per_batch == 3
    assert Rec004Config.from_profile("converged", method="resnet50").pairs_per_batch == 8  # augment defaults to on
    # the classifier with augmentation: 8 pairs, in fewer steps than the other recipes
    steps = {(m, a, d): Rec004Config.from_profile("converged", method=m, augment=a, dataset=d).steps
             for m in rec004.METHODS for a in rec004.AUGMENTS for d in ("magnetictile", "kolektorsdd")}
    assert steps.pop(("resnet50", True, "magnetictile")) == rec004.RECIPE_STEPS[("resnet50", True, "magnetictile")] == 2000
    assert steps.pop(("resnet50", True, "kolektorsdd")) == rec004.RECIPE_STEPS[("resnet50", True, "kolektorsdd")] == 500
    assert {s for (_, _, d), s in steps.items() if d == "magnetictile"} == {4000}
    assert {s for (_, _, d), s in steps.items() if d == "kolektorsdd"} == {1000}
    assert Rec004Config.from_profile("converged", method="resnet50", dataset="magnetictile", steps=9).steps == 9
    assert converged.warmup == 0.1 and converged.val_fraction == 0.2 and converged.weight_decay == 1e-4
    assert Rec004Config.from_profile("smoke").dataset == "synthetic"
    for bad in ({"method": "fcn"}, {"dataset": "mdpa"}, {"input_size": [224, 200]}, {"augment": "yes"}, {"steps": 0},
                {"amp": True}):
        with pytest.raises(ConfigError, match="rec004"):
            Rec004Config.from_profile("converged", **bad)


def test_grid_covers_datasets_methods_and_augmentation():
    grid = Rec004GridConfig.from_profile("converged")
    cells = grid.cells()
    assert len(cells) == 8
    assert {(c.dataset, c.method, c.augment) for c in cells} == {
        (d, m, a) for d in ("magnetictile", "kolektorsdd") for m in ("dr", "resnet50") for a in (True, False)}
    assert {c.dataset for c in Rec004GridConfig.from_profile("smoke").cells()} == {"synthetic"}
    # the book shows the converged grid from the cache (defectlib grid computes it); smoke and paper train
    assert not grid.compute and Rec004GridConfig.from_profile("smoke").compute
    assert Rec004GridConfig.from_profile("paper").compute
    with pytest.raises(ConfigError):
        Rec004GridConfig.from_profile("converged", methods=["vgg"])


def test_the_resolution_study_is_dr_without_augmentation_at_other_inputs_on_the_same_folds():
    main = {(c.dataset, c.method, c.augment): c for c in Rec004GridConfig.from_profile("converged").cells()}
    study = Rec004GridConfig.from_profile("converged").resolution_cells()
    assert [c.input_size for c in study] == rec004.RESOLUTIONS and rec004.RESOLUTIONS
    for cfg in study:
        base = main[("kolektorsdd", "dr", False)]
        assert (cfg.dataset, cfg.method, cfg.augment) == ("kolektorsdd", "dr", False)
        assert cfg.input_size != base.input_size and cfg.digest() != base.digest()
        # the same recipe and folds: only the input differs
        assert {k: v for k, v in cfg.to_dict().items() if k != "input_size"} == \
            {k: v for k, v in base.to_dict().items() if k != "input_size"}
    assert Rec004GridConfig.from_profile("paper").resolution_cells() == []
    assert [c.dataset for c in Rec004GridConfig.from_profile("smoke").resolution_cells()] == ["synthetic"]
    with pytest.raises(ConfigError):
        Rec004GridConfig.from_profile("converged", resolutions=[[100, 64]])


def test_run_grid_without_compute_trains_nothing_and_leaves_missing_cells_out(isolated, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("run_grid(compute=False) must not train")

    monkeypatch.setattr(rec004, "_train_fold", no_training)
    assert rec004.run_grid(Rec004GridConfig.from_profile("smoke").cells(), compute=False, progress=False) == []


@pytest.mark.slow
def test_a_smoke_cell_runs_resumes_and_is_cached(isolated, monkeypatch):
    cfg = Rec004Config.from_profile("smoke", steps=2, eval_every=1)
    calls = interrupt_fold_once(monkeypatch, rec004)
    with pytest.raises(KeyboardInterrupt):
        rec004.run(cfg, progress=False)
    result = rec004.run(cfg, progress=False)
    assert calls == [0, 1, 1, 2]
    s = result.samples
    assert list(s.columns) == ["sample_id", "fold", "label", "defect_class", "defect_area", "defect_area_input",
                               "score", "normal_blocks", "fp_blocks"]
    assert s["sample_id"].is_unique and sorted(s["fold"].unique()) == [0, 1, 2]
    assert s["score"].between(0, 1).all()
    assert ((s["defect_area_input"] > 0) == (s["defect_area"] > 0)).all()
    assert ((s["fp_blocks"] >= 0) & (s["fp_blocks"] <= s["normal_blocks"]) & (s["normal_blocks"] <= 4)).all()
    m = result.metrics
    assert {"tpr", "tnr", "acc", "block_fpr", "per_fold", "fold_checks", "failed_folds"} <= set(m)
    assert len(m["per_fold"]) == 3 and sorted(m["fold_checks"]) == ["0", "1", "2"]
    assert m["failed_folds"] == sorted(int(f) for f, c in m["fold_checks"].items() if c["constant_output"])
    assert all({"test_score_std", "val_score_std", "val_ap"} <= set(c) for c in m["fold_checks"].values())
    assert m["block_fpr"] == pytest.approx(s["fp_blocks"].sum() / s["normal_blocks"].sum())
    assert result.provenance["pretrained"] == "None"
    curves = rec004.training_curves(result)[0]
    assert curves["train_losses"].shape == (2,) and curves["train_eval_step"].tolist() == [1.0, 2.0]
    assert {"train_eval_ap", "train_eval_tpr", "train_eval_tnr", "train_eval_std",
            "train_eval_block_fpr"} <= set(curves)
    assert rec004.run(cfg, progress=False).key == result.key and calls == [0, 1, 1, 2]
    # the cached cell is what run_grid shows without computing
    assert [r.key for r in rec004.run_grid([cfg], compute=False, progress=False)] == [result.key]

    table = rec004.grid_table([result])
    assert table["fold"].tolist() == ["0", "1", "2", "all"]
    assert table.iloc[-1]["acc"] == pytest.approx(result.metrics["acc"])
    assert table.iloc[-1]["block_fpr"] == pytest.approx(m["block_fpr"])  # DR reports its block false positives
    assert table.iloc[0]["block_fpr"] == pytest.approx(m["per_fold"]["0"]["block_fpr"])
    for area in ("input", "native"):
        small = rec004.small_defect_table([result], area=area)
        assert small.loc[0, "n_defect_free"] == (s["label"] == 0).sum()
    bins = rec004.size_bin_tpr([result])
    assert bins["n"].sum() == ((s["label"] == 1) & (s["defect_area"] > 0)).sum()


def _run_in(tmp_path, monkeypatch, cfg: Rec004Config, folder: str) -> RunResult:
    """``cfg`` run with its own results and cache under ``tmp_path / folder``."""
    monkeypatch.setenv("DEFECTLIB_RESULTS", str(tmp_path / folder / "results"))
    monkeypatch.setenv("DEFECTLIB_CACHE", str(tmp_path / folder / "cache"))
    return rec004.run(cfg, progress=False)


@pytest.mark.slow
def test_a_stalled_network_is_trained_again_and_its_fold_says_so(tmp_path, monkeypatch):
    import itertools

    import defectlib.training.loop as loop_module
    from defectlib.experiments.common import restarted_folds

    cfg = Rec004Config.from_profile("smoke", steps=2, eval_every=1)
    run_in = partial(_run_in, tmp_path, monkeypatch, cfg)

    plain = run_in("plain")
    assert all("restarts" not in c for c in plain.metrics["fold_checks"].values())
    assert restarted_folds([plain], lambda r: "cell").empty
    # every fold's first attempt is judged stalled, its second is not
    monkeypatch.setattr(loop_module, "stalled", lambda history, verdicts=itertools.cycle([True, False]): next(verdicts))
    again = run_in("again")
    assert again.key == plain.key
    assert all(c["restarts"] == 1 for c in again.metrics["fold_checks"].values())
    for fold in range(cfg.n_folds):
        first, kept = rec004.training_curves(plain)[fold], rec004.training_curves(again)[fold]
        stalled = np.load(again.path / "artifacts" / f"fold{fold}.npz")
        assert np.array_equal(stalled["train_stalled0_losses"], first["train_losses"])  # the plain run, kept aside
        assert not np.array_equal(kept["train_losses"], first["train_losses"])  # trained again from new weights
        assert "train_stalled1_losses" not in stalled
    assert not np.array_equal(again.samples["score"], plain.samples["score"])
    table = restarted_folds([again], lambda r: "cell")
    assert table["fold"].tolist() == list(range(cfg.n_folds)) and (table["restarts"] == 1).all()
    # each stalled attempt's figures are read back from its curves: here the plain run's
    from defectlib.training.loop import last_tenth_loss
    plain_curves = rec004.training_curves(plain)
    assert table["stalled_loss"].tolist() == [f"{last_tenth_loss(plain_curves[f]['train_losses']):.3f}"
                                              for f in range(cfg.n_folds)]
    assert table["stalled_val_ap"].tolist() == [f"{plain_curves[f]['train_eval_ap'][-1]:.3f}" for f in range(cfg.n_folds)]
    assert table["loss"].tolist() == [last_tenth_loss(rec004.training_curves(again)[f]["train_losses"])
                                      for f in range(cfg.n_folds)]
    # the same again: the new weights are seeded
    monkeypatch.setattr(loop_module, "stalled", lambda history, verdicts=itertools.cycle([True, False]): next(verdicts))
    assert run_in("twice").samples["score"].tolist() == again.samples["score"].tolist()


@pytest.mark.slow
def test_when_every_attempt_stalls_the_kept_one_is_read_back_from_its_checkpoint(tmp_path, monkeypatch):
    import defectlib.training.loop as loop_module

    cfg = Rec004Config.from_profile("smoke", steps=2, eval_every=1)
    run_in = partial(_run_in, tmp_path, monkeypatch, cfg)

    plain = run_in("plain")
    # every attempt stalls, and the first one's loss is made the lowest: the first is kept
    monkeypatch.setattr(loop_module, "stalled", lambda history: True)
    seen: dict = {}  # each fold's attempts 0, 1, 2 are first seen in that order

    def last_tenth_loss(losses):
        order = seen.setdefault(tuple(losses), len(seen))
        return (0.4, 0.6, 0.5)[order % 3]

    monkeypatch.setattr(loop_module, "last_tenth_loss", last_tenth_loss)
    again = run_in("again")
    assert all(c["restarts"] == 2 for c in again.metrics["fold_checks"].values())
    # the first attempt's network, put back from its checkpoint, scored the test images
    assert again.samples["score"].tolist() == plain.samples["score"].tolist()


def _result(samples: pd.DataFrame) -> RunResult:
    config = {"dataset": "toy", "method": "dr", "augment": True, "input_size": [224, 224],
              "threshold": 0.5}
    return RunResult(key="k", path=Path("."), samples=samples, metrics={}, provenance={"config": config})


def test_small_defect_table_and_size_bins_on_known_scores():
    samples = pd.DataFrame({
        "label":             [1,   1,    1,    1,   0,   0,   0,   0],
        "defect_area":       [50,  120,  5000, 0,   0,   0,   0,   0],
        "defect_area_input": [20,  60,   900,  0,   0,   0,   0,   0],
        "score":             [0.9, 0.2,  0.7,  0.1, 0.1, 0.6, 0.2, 0.3],
    })
    r = _result(samples)
    native = rec004.small_defect_table([r], area="native").iloc[0]
    assert (native["n_small"], native["tpr"], native["tnr"], native["acc"]) == (1, 1.0, 0.75, 0.875)
    at_input = rec004.small_defect_table([r], area="input").iloc[0]  # the empty-mask defective image is not small
    assert (at_input["n_small"], at_input["tpr"], at_input["n_defect_free"]) == (2, 0.5, 4)
    none = rec004.small_defect_table([r], max_area=10, area="native").iloc[0]
    assert none["n_small"] == 0 and math.isnan(none["tpr"]) and math.isnan(none["acc"])
    bins = rec004.size_bin_tpr([r], bins=(1, 100, 1000, math.inf)).set_index("bin")
    assert bins["n"].tolist() == [1, 1, 1] and bins["tpr"].tolist() == [1.0, 0.0, 1.0]
    assert list(bins.index) == ["1–99", "100–999", "≥1000"]
    empty = rec004.size_bin_tpr([r], bins=(10000, 20000))
    assert empty.loc[0, "n"] == 0 and math.isnan(empty.loc[0, "tpr"])
    with pytest.raises(ValueError, match="area"):
        rec004.small_defect_table([r], area="pixels")
    with pytest.raises(ValueError, match="bins"):
        rec004.size_bin_tpr([r], bins=(100, 10))


def test_rates_with_empty_groups():
    assert rec004.rates([0.5], [0.49]) == {"tpr": 1.0, "tnr": 1.0, "acc": 1.0, "n_positive": 1, "n_negative": 1}
    assert math.isnan(rec004.rates([], [])["acc"])
    r = rec004.rates([0.1], [])
    assert r["tpr"] == 0.0 and math.isnan(r["tnr"]) and r["n_negative"] == 0


@pytest.mark.parametrize("module", [training_module, rec004, models_module, augment_module])
def test_doctests(module):
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


def test_best_cells_pick_the_highest_ap_per_dataset_and_report_misses_and_the_curves_last_third(
        tmp_path, monkeypatch):
    positives = {0: 2}  # defective validation images of the toy cells' one fold
    monkeypatch.setattr(rec004, "validation_positives", lambda cfg, memo=None: positives)

    def result(name, method, scores, curve):
        path = tmp_path / name
        (path / "artifacts").mkdir(parents=True)
        np.savez(path / "artifacts" / "fold0.npz", train_eval_step=np.array([100, 200, 300]),
                 train_eval_ap=np.array(curve))
        samples = pd.DataFrame({"fold": 0, "label": [1, 1, 1, 0], "defect_area": [50, 80, 0, 0],
                                "defect_area_input": [5, 8, 0, 0], "score": scores})
        labels, values = samples["label"].to_numpy(), samples["score"].to_numpy()
        metrics = {**tpr_tnr_acc(labels, values, threshold=0.5), "ap": average_precision(labels, values)}
        config = {"dataset": "toy", "method": method, "augment": False, "input_size": [224, 224], "threshold": 0.5}
        result = RunResult(key=name, path=path, samples=samples, metrics=metrics, provenance={"config": config})
        monkeypatch.setattr(RunResult, "config", property(lambda self: self.provenance["config"]))
        return result

    weak = result("weak", "dr", [0.6, 0.05, 0.2, 0.7], [0.4, 0.5, 0.6])
    strong = result("strong", "resnet50", [0.9, 0.3, 0.8, 0.1], [0.7, 0.8, 0.8])
    best = rec004.best_cells([weak, strong])
    assert len(best) == 1
    row = best.iloc[0]
    assert row["method"] == "resnet50" and row["ap"] == 1.0
    # the unannotated defective image (area 0) is not counted among the masked ones
    assert (row["n_masked"], row["missed"], row["missed_confidently"]) == (2, 1, 0)
    assert row["val_ap_change_mean"] == pytest.approx(0.0) and row["ap_chance"] == pytest.approx(0.75)
    weakest = rec004.best_cells([weak]).iloc[0]
    assert weakest["val_ap_change_max"] == pytest.approx(0.1)
    # a rise of 0.1 to AP 0.6 is within the standard error on 2 defective images (0.35), not on 100 (0.049)
    assert (weakest["rising_folds"], weakest["n_folds"], weakest["val_positives"]) == (0, 1, 2)
    positives[0] = 100
    assert rec004.best_cells([weak]).iloc[0]["rising_folds"] == 1
    assert rec004.best_cells([]).empty


def _cell_result(dataset: str, method: str, augment: bool, acc: list[float]) -> RunResult:
    per_fold = {str(f): {"tpr": a, "tnr": a, "acc": a, "ap": a, "n": 10, "n_positive": 5} for f, a in enumerate(acc)}
    metrics = {"tpr": 0.5, "tnr": 0.5, "acc": sum(acc) / len(acc), "ap": sum(acc) / len(acc), "n": 30,
               "n_positive": 15, "per_fold": per_fold}
    config = {"dataset": dataset, "method": method, "augment": augment, "input_size": [224, 224]}
    return RunResult(key=f"{dataset}{method}{augment}", path=Path("."), samples=pd.DataFrame(), metrics=metrics,
                     provenance={"wall_time_s": 60, "config": config})


def test_paired_comparison_pairs_cells_fold_by_fold_and_skips_a_lone_cell():
    results = [_cell_result("a", "dr", False, [0.5, 0.6, 0.7]), _cell_result("a", "dr", True, [0.4, 0.5, 0.6]),
               _cell_result("a", "resnet50", False, [0.5, 0.5, 0.5]),  # no partner with augmentation
               _cell_result("b", "dr", True, [0.9, 0.9, 0.9])]
    effect = rec004.paired_comparison(results, by="augment")
    assert effect[["dataset", "method"]].values.tolist() == [["a", "dr"]]
    row = effect.iloc[0]
    assert (row["acc_folds_better"], row["ap_folds_better"], row["folds"]) == (0, 0, 3)
    assert row["acc_ref"] == pytest.approx(0.6) and row["acc_other"] == pytest.approx(0.5)
    assert rec004.paired_comparison(results[2:]).empty
    methods = rec004.paired_comparison(results, by="method")  # DR against the classifier, augmentation off
    assert methods[["dataset", "augment"]].values.tolist() == [["a", False]]
    assert (methods.iloc[0]["acc_folds_better"], methods.iloc[0]["folds"]) == (2, 3)
    with pytest.raises(ValueError, match="by must be"):
        rec004.paired_comparison(results, by="dataset")


def test_score_spread_reads_each_cells_threshold_and_the_plot_draws_every_cell():
    import matplotlib.pyplot as plt

    from defectlib.plots import plot_scores

    def cell(method, threshold, scores, labels):
        return RunResult(key=method, path=Path("."), samples=pd.DataFrame({"label": labels, "score": scores}),
                         metrics={}, provenance={"config": {"dataset": "a", "method": method, "augment": False,
                                                            "input_size": [224, 224], "threshold": threshold}})

    labels = [0, 0, 0, 1, 1]
    scores = [0.1, 0.4, 0.6, 0.55, 0.9]
    results = [cell("dr", 0.5, scores, labels), cell("resnet50", 0.7, scores, labels)]
    spread = rec004.score_spread(results, quantiles=(0.5,))
    assert list(spread.columns[-4:]) == ["free_q50", "defective_q50", "tnr", "tpr"]
    assert spread["free_q50"].tolist() == [0.4, 0.4] and spread["defective_q50"].tolist() == pytest.approx([0.725] * 2)
    assert spread["tnr"].tolist() == pytest.approx([2 / 3, 1.0]) and spread["tpr"].tolist() == [1.0, 0.5]
    scores = pd.concat([r.samples.assign(cell=r.key) for r in results])
    fig = plot_scores(scores, by="cell", xlabel="cell")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["dr", "resnet50"]
    plt.close(fig)
