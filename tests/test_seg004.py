"""Seed 004's segmentation: the two networks, crop-only training, and a smoke cell with resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defectlib.data import load_samples
from defectlib.data.dataset import SurfaceDataset
from defectlib.errors import ConfigError
from defectlib.experiments import seg004
from defectlib.experiments.seg004 import GALLERY, Seg004Config, Seg004GridConfig
from defectlib.metrics import pixel_counts
from defectlib.models import build_model
from defectlib.models.deeplab import deeplabv3plus
from defectlib.models.seg004_improved import ImprovedDeepLabV3Plus
from defectlib.seeding import seed_everything, torch_generator
from defectlib.training import Schedule
from defectlib.training.seg004 import (
    CROP_STREAM,
    BalancedBatchSampler,
    crop_loss,
    defect_crop_box,
    predict_seg004,
    random_crop_box,
    soft_dice_loss,
    train_seg004,
)

from helpers import interrupt_fold_once


class TinyCropNet(torch.nn.Module):
    """A stand-in with the improved network's interface: full-resolution logits, or a crop's."""

    supports_crop = True

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, crop=None):
        logits = self.conv(x)
        if crop is None:
            return logits
        return torch.stack([logits[i, :, t:t + h, l:l + w] for i, (t, l, h, w) in enumerate(crop)])


@pytest.fixture(scope="module")
def improved():
    torch.manual_seed(0)
    return ImprovedDeepLabV3Plus().eval()


# ------------------------------------------------------------------------------------ models


def test_deeplab_is_smps_when_the_size_divides_by_16():
    torch.manual_seed(0)
    net, x = deeplabv3plus().eval(), torch.rand(1, 1, 64, 96)
    upsample = torch.nn.Upsample(scale_factor=4, mode="bilinear", align_corners=True)  # smp's head
    with torch.no_grad():
        assert torch.allclose(net(x), upsample(net.head(net.decoder(net.encoder(x)))), atol=1e-6)


@pytest.mark.parametrize("size", [(64, 64), (96, 64)])
def test_both_networks_give_full_resolution_logits(size, improved):
    torch.manual_seed(0)
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        assert deeplabv3plus().eval()(x).shape == (2, 1, *size)
        assert improved(x).shape == (2, 1, *size)
        # training-time output: the crop's logits only, one box per image or one for all
        assert improved(x, crop=(16, 32, 32, 32)).shape == (2, 1, 32, 32)
        assert improved(x, crop=[(0, 0, 48, 32), (16, 16, 48, 32)]).shape == (2, 1, 48, 32)
        assert improved(x, crop=(3, 5, 21, 30)).shape == (2, 1, 21, 30)  # off the 16-pixel grid


def test_a_crop_of_the_whole_image_is_the_whole_image(improved):
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        assert torch.allclose(improved(x), improved(x, crop=(0, 0, 64, 96)), atol=1e-6)


@pytest.mark.parametrize("flags", [{"branch": False}, {"aspp": True}, {"branch": False, "aspp": True}])
def test_ablation_variants_build_and_run(flags):
    model = build_model("seg004/improved", **flags).eval()
    assert (model.branch is not None) == flags.get("branch", True)
    with torch.no_grad():
        assert model(torch.rand(1, 1, 64, 64), crop=(0, 16, 32, 32)).shape == (1, 1, 32, 32)


def test_bad_crops_fail_clearly(improved):
    x = torch.rand(2, 1, 64, 64)
    with pytest.raises(ValueError, match="not inside"):
        improved(x, crop=(48, 0, 32, 32))
    with pytest.raises(ValueError, match="same"):
        improved(x, crop=[(0, 0, 32, 32), (0, 0, 16, 16)])


# ---------------------------------------------------------------------------------- training


def test_the_loss_sees_the_mask_inside_the_crop_only():
    torch.manual_seed(0)
    model = ImprovedDeepLabV3Plus().train()
    image = torch.rand(2, 1, 64, 64)
    boxes = [(16, 0, 32, 32), (0, 32, 32, 32)]
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, 0, 20:24, 4:10] = 1  # inside box 0

    def loss_and_grads(m):
        model.zero_grad(set_to_none=True)
        loss = crop_loss(model, image, m, boxes)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    base_loss, base_grads = loss_and_grads(mask)
    outside = mask.clone()
    outside[0, 0, 0:16, :] = 1  # above box 0
    outside[1, 0, 40:, :] = 1   # below box 1
    outside[1, 0, :, :32] = 1   # left of box 1
    loss, grads = loss_and_grads(outside)
    assert torch.equal(loss, base_loss)
    assert all(torch.equal(a, b) for a, b in zip(grads, base_grads))
    inside = mask.clone()
    inside[1, 0, 5:9, 40:44] = 1
    assert not torch.equal(loss_and_grads(inside)[0], base_loss)


def test_random_crops_lie_on_the_grid_inside_the_image():
    g = torch_generator(3)
    boxes = [random_crop_box(96, 64, (32, 48), g) for _ in range(200)]
    assert all(t % 16 == 0 and l % 16 == 0 and t + 32 <= 96 and l + 48 <= 64 for t, l, _, _ in boxes)
    assert {b[0] for b in boxes} == {0, 16, 32, 48, 64} and {b[1] for b in boxes} == {0, 16}
    again = [random_crop_box(96, 64, (32, 48), torch_generator(3)) for _ in range(1)]
    assert again[0] == boxes[0]


def test_crops_on_defects_hold_a_defect_pixel_of_every_defective_image(isolated, monkeypatch):
    import defectlib.training.seg004 as training

    mask = torch.zeros(96, 64)
    mask[70:72, 5] = 1
    g = torch_generator(1)
    boxes = [defect_crop_box(mask, (32, 48), g) for _ in range(100)]
    assert all(t % 16 == 0 and l % 16 == 0 and t + 32 <= 96 and l + 48 <= 64 for t, l, _, _ in boxes)
    assert all(t <= 70 < t + 32 or t <= 71 < t + 32 for t, _, _, _ in boxes) and {b[1] for b in boxes} == {0}
    assert {b[0] for b in boxes} == {48, 64}
    assert defect_crop_box(torch.zeros(96, 64), (32, 48), torch_generator(5)) == \
        random_crop_box(96, 64, (32, 48), torch_generator(5))  # no defect: a uniform crop

    data = SurfaceDataset(load_samples("synthetic"), size=(64, 64))
    crops = []
    original = training.crop_loss

    def spy(model, image, mask, boxes=None, **kw):
        crops.extend(mask[i, 0, t:t + h, l:l + w].sum() > 0 for i, (t, l, h, w) in enumerate(boxes) if mask[i].sum() > 0)
        return original(model, image, mask, boxes, **kw)

    monkeypatch.setattr(training, "crop_loss", spy)
    seed_everything(0)
    train_seg004(TinyCropNet(), data, schedule=Schedule(6, 1e-3), crop_size=(16, 16), crop_on_defect=True,
                 pairs_per_batch=1, seed=0, progress=False)
    assert len(crops) == 6 and all(crops)


def test_batches_hold_n_defective_and_n_defect_free_images():
    labels = [1, 0, 0, 0, 1, 0, 1, 0]
    batches = list(BalancedBatchSampler(labels, n=2, num_batches=5, generator=torch_generator(0)))
    assert len(batches) == 5
    assert all([labels[i] for i in b] == [1, 1, 0, 0] for b in batches)
    first_pass = [i for b in batches[:2] for i in b[:2]][:3]
    assert sorted(first_pass) == [0, 4, 6]  # every defective image once per pass


def test_soft_dice_is_zero_for_a_perfect_map_and_spans_the_batch():
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, 2:5, 2:5] = 1
    perfect = torch.where(target > 0, 30.0, -30.0)
    assert float(soft_dice_loss(perfect, target)) == pytest.approx(0.0, abs=1e-6)
    nothing = torch.full_like(target, -30.0)
    assert float(soft_dice_loss(nothing, target)) == pytest.approx(1 - 1 / 10, abs=1e-6)  # eps / (|T| + eps)
    # a defect-free image predicted empty adds nothing: the overlap and sums are over the batch
    assert float(soft_dice_loss(nothing[1:], target[1:])) == pytest.approx(0.0, abs=1e-6)
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    soft_dice_loss(logits, target).backward()
    assert logits.grad.abs().sum() > 0


def test_crop_loss_adds_the_weighted_dice_term():
    torch.manual_seed(0)
    model = TinyCropNet().eval()
    image = torch.rand(2, 1, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, 0, 20:24, 4:10] = 1
    boxes = [(16, 0, 32, 32), (0, 32, 32, 32)]
    with torch.no_grad():
        bce = crop_loss(model, image, mask, boxes)
        logits = model(image, crop=boxes)
        target = torch.stack([mask[0, :, 16:48, 0:32], mask[1, :, 0:32, 32:64]])
        expected = bce + 2.5 * soft_dice_loss(logits, target)
        assert torch.allclose(crop_loss(model, image, mask, boxes, dice_weight=2.5), expected, atol=1e-6)
        assert torch.equal(crop_loss(model, image, mask, boxes, dice_weight=0.0), bce)
        whole = crop_loss(model, image, mask, None, dice_weight=1.0)
        assert torch.allclose(whole, crop_loss(model, image, mask, None) + soft_dice_loss(model(image), mask), atol=1e-6)


def test_deeplabv3plus_cannot_take_crops(isolated):
    data = SurfaceDataset(load_samples("synthetic"), size=(64, 64))
    with pytest.raises(ValueError, match="crop"):
        train_seg004(deeplabv3plus(), data, schedule=Schedule(1, 1e-3), crop_size=(32, 32), seed=0,
                     progress=False)
    with pytest.raises(ValueError, match="weight_decay"):
        train_seg004(deeplabv3plus(), data, schedule=Schedule(1, 1e-3), weight_decay=-1.0, seed=0,
                     progress=False)


def test_both_networks_get_the_same_batches_and_the_crops_their_own_stream(isolated, monkeypatch):
    import defectlib.training.seg004 as training

    data = SurfaceDataset(load_samples("synthetic"), size=(64, 64))
    seen = {}
    original = training.fit

    def spy(name, **kw):
        seen.setdefault("plans", []).append(kw["plan"])
        seen.setdefault("generators", []).append(kw["generators"])
        return original(name, **kw)

    monkeypatch.setattr(training, "fit", spy)
    boxes = []
    monkeypatch.setattr(training, "random_crop_box", lambda *a, **k: boxes.append(random_crop_box(*a, **k)) or boxes[-1])
    seed_everything(0)
    train_seg004(TinyCropNet(), data, schedule=Schedule(2, 1e-3), crop_size=(32, 32), pairs_per_batch=1, seed=4,
                 progress=False)  # the improved network's way: crops
    train_seg004(TinyCropNet(), data, schedule=Schedule(2, 1e-3), pairs_per_batch=1, seed=4,
                 progress=False)  # DeepLabv3+'s: whole images
    assert seen["plans"][0] == seen["plans"][1]
    labels = data.table["label"].to_numpy()
    assert seen["plans"][0] == list(BalancedBatchSampler(labels, n=1, num_batches=2, generator=torch_generator(4)))
    assert set(seen["generators"][0]) == {"crops"}
    g = torch_generator(4 + CROP_STREAM)
    assert boxes == [random_crop_box(64, 64, (32, 32), g) for _ in range(4)]  # 2 steps × 2 images, from seed + CROP_STREAM


@pytest.mark.slow
def test_a_tiny_training_on_synthetic_defects_lowers_the_loss(isolated):
    """The improved network with local image input: its crop loss goes down."""
    table = load_samples("synthetic")
    data = SurfaceDataset(table, size=(64, 64))
    seed_everything(0)
    model = build_model("seg004/improved")
    history = train_seg004(model, data, schedule=Schedule(24, 1e-3, warmup=0.0, final=1.0), weight_decay=1e-4,
                           crop_size=(32, 32), pairs_per_batch=2, seed=0, evaluate=lambda: {"x": 1.0}, eval_every=8,
                           progress=False)
    losses = history.losses
    assert len(losses) == 24 and np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert [e["step"] for e in history.evals] == [8.0, 16.0, 24.0]

    test = SurfaceDataset(table.iloc[:6], size=(64, 64))
    counts, maps = predict_seg004(model, test, keep_maps=True, progress=False)
    assert counts["index"].tolist() == list(range(6))
    assert (counts[["tp", "fp", "fn", "tn"]].sum(axis=1) == 64 * 64).all()
    mask = test[0]["mask"][0].numpy()
    expected = pixel_counts(maps[0].astype(np.float32), mask, threshold=0.5)
    assert {k: int(counts.loc[0, k]) for k in expected} == expected
    assert counts["prob_max"].to_numpy() == pytest.approx([float(maps[i].max()) for i in range(6)], abs=1e-3)


def test_a_dice_term_trains_and_is_deterministic(isolated):
    """Seeded alike, the first step sees the same batch, crops and weights: the losses differ by
    the Dice term alone, a number in [0, 1]."""
    data = SurfaceDataset(load_samples("synthetic"), size=(64, 64))

    def train(dice_weight):
        seed_everything(0)
        return train_seg004(TinyCropNet(), data, schedule=Schedule(4, 1e-2), crop_size=(32, 32), pairs_per_batch=1,
                            dice_weight=dice_weight, seed=0, progress=False).losses

    with_dice = train(1.0)
    assert len(with_dice) == 4 and np.isfinite(with_dice).all()
    assert with_dice == train(1.0)
    plain = train(0.0)
    assert 0 < with_dice[0] - plain[0] <= 1.0
    assert with_dice[1:] != plain[1:]  # the term changed the updates


# ------------------------------------------------------------------------------- experiment


def test_profiles_and_crop_defaults():
    converged = Seg004Config.from_profile("converged")
    assert (converged.dataset, converged.input_size, converged.crop_size, converged.n_folds) == (
        "magnetictile", [128, 128], [64, 64], 5)
    assert (converged.steps, converged.dice_weight, converged.eval_every, converged.warmup) == (10000, 1.0, 250, 0.1)
    assert converged.lr == seg004.LEARNING_RATES["magnetictile"] == 3e-4
    kolektor = Seg004Config.from_profile("converged", dataset="kolektorsdd", model="deeplabv3plus")
    assert (kolektor.input_size, kolektor.crop_size, kolektor.variant) == ([352, 128], [176, 64], "DeepLabv3+")
    assert (kolektor.steps, kolektor.lr) == (seg004.STEPS["kolektorsdd"], 1e-3) == (1000, 1e-3)
    # both networks of a dataset share the recipe; an explicit lr wins over the per-dataset one
    assert Seg004Config.from_profile("converged", model="deeplabv3plus").lr == converged.lr
    assert Seg004Config.from_profile("converged", lr=1e-3).lr == 1e-3
    paper = Seg004Config.from_profile("paper", dataset="kolektorsdd")
    assert paper.input_size == [1408, 512] and paper.threshold == 0.5
    assert Seg004Config.from_profile("paper").lr == paper.lr == 1e-3  # the paper's rate on both datasets
    assert paper.dice_weight == 0.0  # the paper's loss: cross-entropy (and L2) only
    assert Seg004Config.from_profile("smoke", aspp=True).variant == "improved + ASPP"
    with pytest.raises(ConfigError, match="unknown dataset 'mdpa'"):
        Seg004Config.from_profile("converged", dataset="mdpa")  # not a KeyError from the per-dataset steps


@pytest.mark.parametrize("bad", [{"model": "unet"}, {"dataset": "mdpa"}, {"input_size": [60, 64]},
                                 {"crop_size": [128, 32]}, {"model": "deeplabv3plus", "aspp": True}, {"lr": "x"},
                                 {"dice_weight": -1.0}, {"amp": True}])
def test_bad_parameters_fail_with_a_clear_message(bad):
    with pytest.raises(ConfigError, match="seg004"):
        Seg004Config.from_profile("smoke", **bad)


def test_grid_and_ablation_cells():
    grid = Seg004GridConfig.from_profile("converged")
    cells = grid.cells()
    assert {(c.dataset, c.model) for c in cells} == {(d, m) for d in ("magnetictile", "kolektorsdd")
                                                     for m in seg004.MODELS}
    assert not grid.compute and Seg004GridConfig.from_profile("smoke").compute
    assert {c.dataset for c in grid.ablation_cells()} == {"kolektorsdd"}
    assert Seg004GridConfig.from_profile("converged", ablation=False).ablation_cells() == []
    ablation = Seg004GridConfig.from_profile("smoke").ablation_cells()
    assert [c.variant for c in ablation] == list(seg004.ABLATION)
    # the ablation's "improved" is the grid's improved cell (same run key)
    assert ablation[0] == Seg004GridConfig.from_profile("smoke").cells()[1]


@pytest.mark.slow
def test_a_smoke_cell_runs_resumes_and_keeps_its_gallery(isolated, monkeypatch):
    cfg = Seg004Config.from_profile("smoke", steps=2)
    calls = interrupt_fold_once(monkeypatch, seg004)
    with pytest.raises(KeyboardInterrupt):
        seg004.run(cfg, progress=False)
    result = seg004.run(cfg, progress=False)
    assert calls == [0, 1, 1, 2]  # fold 0 was not trained again
    samples = result.samples
    assert sorted(samples["fold"].unique()) == [0, 1, 2] and samples["sample_id"].is_unique
    assert (samples[["tp", "fp", "fn", "tn"]].sum(axis=1) == 64 * 64).all()
    m = result.metrics
    assert {"precision", "recall", "f1", "per_fold", "f1_fold_mean", "f1_fold_std", "fold_checks",
            "failed_folds"} <= set(m)
    assert m["tp"] == samples["tp"].sum() and len(m["per_fold"]) == 3
    assert m["failed_folds"] == sorted(int(f) for f, c in m["fold_checks"].items() if c["constant_output"])
    assert all({"test_prob_max_std", "val_prob_max_std", "val_pixel_f1"} <= set(c) for c in m["fold_checks"].values())
    assert result.provenance["pretrained"] == "None"
    curves = seg004.training_curves(result)[0]
    assert curves["train_losses"].shape == (2,) and curves["train_eval_step"].tolist() == [2.0]
    assert {"train_eval_pixel_f1", "train_eval_ap", "train_eval_std"} <= set(curves)

    table = seg004.grid_table([result])
    assert list(table["fold"]) == ["0", "1", "2", "all"]
    sizes = seg004.size_table([result])
    assert sizes["n"].iloc[:-1].sum() == ((samples["label"] == 1) & (samples["mask_area"] > 0)).sum()
    classes = seg004.class_table([result])
    assert classes["n"].sum() == sizes["n"].iloc[:-1].sum()
    assert classes["pixel_share"].sum() == pytest.approx(1.0)
    for category in GALLERY:
        entries, images, masks, probs = seg004.gallery(result, category)
        assert len(entries) == len(images) == len(masks) == len(probs)
        assert all(i.shape == (64, 64) and p.dtype == np.uint8 for i, p in zip(images, probs))
    best, worst = seg004.gallery(result, "best")[0], seg004.gallery(result, "worst")[0]
    assert len(best) > 0 and best["f1_image"].iloc[0] >= worst["f1_image"].iloc[0]
    # A finished cell is read from the cache, not trained again.
    assert seg004.run(cfg, progress=False).key == result.key and calls == [0, 1, 1, 2]


@pytest.mark.parametrize("name", ["defectlib.models.seg004_improved", "defectlib.training.seg004",
                                  "defectlib.experiments.seg004"])
def test_doctests(name, isolated):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
