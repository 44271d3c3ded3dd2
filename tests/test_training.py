"""Tests of the alternating sampler and seed 000's two-stage training (defectlib.training.seg000).

The real networks live in defectlib.models; here tiny stand-ins with the same interface
(``segnet(x) -> SegOutput(features, logits)`` at 1/8 resolution, ``feature_channels``;
``classifier(features, logits) -> (N,)``) keep the tests fast on a CPU.
"""

from __future__ import annotations

import doctest
from collections import Counter
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from defectlib.data.dataset import SurfaceDataset
from defectlib.data.synthetic import SyntheticSpec, synthetic_samples
from defectlib.seeding import torch_generator
from defectlib.training import (
    AlternatingSampler,
    History,
    Schedule,
    freeze,
    predict,
    seg_targets,
    train_classifier,
    train_segmentation,
)
from defectlib.training import loop as loop_module
from defectlib.training import sampler as sampler_module
from defectlib.training import seg000 as seg000_training
from defectlib.training.seg000 import alternating_plan

# --------------------------------------------------------------------------------------
# Stand-in models
# --------------------------------------------------------------------------------------


class SegOutput(NamedTuple):
    features: torch.Tensor
    logits: torch.Tensor


class TinySeg(nn.Module):
    """Three stride-2 conv + BN + ReLU blocks (1/8 resolution) and a 1x1 map head."""

    feature_channels = 8

    def __init__(self) -> None:
        super().__init__()
        layers, cin = [], 1
        for _ in range(3):
            layers += [nn.Conv2d(cin, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU()]
            cin = 8
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> SegOutput:
        features = self.body(x)
        return SegOutput(features, self.head(features))


class TinyClassifier(nn.Module):
    """Conv on features + map, global max/avg pooling of it and of the map, a linear layer."""

    def __init__(self, channels: int = TinySeg.feature_channels) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels + 1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 2 + 2, 1)

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(torch.cat([features, logits], dim=1)))
        pooled = [h.amax(dim=(2, 3)), h.mean(dim=(2, 3)), logits.amax(dim=(2, 3)), logits.mean(dim=(2, 3))]
        return self.fc(torch.cat(pooled, dim=1)).squeeze(1)


class NaNSeg(TinySeg):
    def forward(self, x: torch.Tensor) -> SegOutput:
        out = super().forward(x)
        return SegOutput(out.features, out.logits * float("nan"))


def _models(seed: int = 0) -> tuple[TinySeg, TinyClassifier]:
    torch.manual_seed(seed)
    return TinySeg(), TinyClassifier()


SPEC = SyntheticSpec(n_images=16, height=64, width=32, defect_fraction=0.5, kinds=("blob",),
                     blob_radius=(4.0, 7.0), contrast=(-90.0, -70.0), images_per_group=4, seed=5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> SurfaceDataset:
    table = synthetic_samples(tmp_path_factory.mktemp("synthetic"), spec=SPEC)
    return SurfaceDataset(table)


def _params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------
# AlternatingSampler
# --------------------------------------------------------------------------------------

LABELS = [0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0]  # 3 defective, 9 defect-free


def _draw(labels=LABELS, **kw) -> list[int]:
    return list(AlternatingSampler(labels, **kw))


def test_sampler_alternates_starting_with_a_defect():
    indices = _draw(num_samples=101, generator=torch_generator(1))
    assert len(indices) == 101
    assert [LABELS[i] for i in indices] == [1 - p % 2 for p in range(101)]


def test_sampler_balance_and_minority_repeats():
    labels = np.array(LABELS)
    for n in (1, 2, 17, 18, 60):
        drawn = labels[_draw(num_samples=n, generator=torch_generator(n))]
        assert abs(int(drawn.sum()) - int((1 - drawn).sum())) <= 1
    # 18 samples: 9 defective draws from 3 defective images = each exactly 3 times
    counts = Counter(i for i in _draw(num_samples=18, generator=torch_generator(0)) if LABELS[i] == 1)
    assert counts == {1: 3, 5: 3, 8: 3}


def test_sampler_default_epoch_sees_every_negative_once():
    negatives = sorted(i for i, y in enumerate(LABELS) if y == 0)
    sampler = AlternatingSampler(LABELS, generator=torch_generator(2))
    assert len(sampler) == 2 * len(negatives) == 18
    for _ in range(3):  # every epoch, and every 2 * n_neg window of a longer stream
        epoch = list(sampler)
        assert sorted(epoch[1::2]) == negatives
    stream = _draw(num_samples=3 * 18, generator=torch_generator(3))
    for start in range(0, len(stream), 18):
        assert sorted(stream[start + 1:start + 18:2]) == negatives


def test_sampler_is_random_and_deterministic():
    a = _draw(num_samples=40, generator=torch_generator(7))
    b = _draw(num_samples=40, generator=torch_generator(7))
    c = _draw(num_samples=40, generator=torch_generator(8))
    assert a == b
    assert a != c
    sampler = AlternatingSampler(LABELS, generator=torch_generator(7))
    assert list(sampler) != list(sampler)  # successive epochs are reshuffled
    # not just sorted order
    assert a[1::2][:9] != sorted(a[1::2][:9])


@pytest.mark.parametrize("labels, missing", [([0, 0, 0], "defective"), ([1, 1], "defect-free"), ([], "defective")])
def test_sampler_missing_class(labels, missing):
    with pytest.raises(ValueError, match=missing):
        AlternatingSampler(labels)


@pytest.mark.parametrize("kw", [{"num_samples": 0}, {"num_samples": -3}, {"num_samples": 2.5}, {"num_samples": True}])
def test_sampler_bad_num_samples(kw):
    with pytest.raises(ValueError, match="num_samples"):
        AlternatingSampler(LABELS, **kw)


def test_sampler_bad_labels_and_input_types():
    with pytest.raises(ValueError, match="0 .defect-free. or 1"):
        AlternatingSampler([0, 1, 2])
    for labels in (pd.Series(LABELS), np.array(LABELS), torch.tensor(LABELS), [bool(y) for y in LABELS]):
        assert _draw(labels, num_samples=10, generator=torch_generator(4)) == \
            _draw(num_samples=10, generator=torch_generator(4))


def test_sampler_doctest():
    assert doctest.testmod(sampler_module).failed == 0


# --------------------------------------------------------------------------------------
# seg_targets, freeze
# --------------------------------------------------------------------------------------


def test_seg_targets_keeps_one_pixel_lines():
    mask = torch.zeros(2, 1, 64, 32)
    mask[0, 0, 13, :] = 1  # a 1-pixel horizontal line in map row 13 // 8 = 1
    mask[1, 0, :, 5] = 1   # a 1-pixel vertical line in map column 5 // 8 = 0
    mask[1, 0, 63, 31] = 1  # a single pixel in the last cell
    target = seg_targets(mask, (8, 4))
    assert target.shape == (2, 1, 8, 4)
    expected = torch.zeros(2, 1, 8, 4)
    expected[0, 0, 1, :] = 1
    expected[1, 0, :, 0] = 1
    expected[1, 0, 7, 3] = 1
    assert torch.equal(target, expected)
    # an average (area) resize would have kept only 1/8 of the line
    assert torch.nn.functional.interpolate(mask, size=(8, 4), mode="area").max() <= 0.125
    assert torch.equal(seg_targets(mask.bool(), torch.Size([8, 4])), expected)
    with pytest.raises(ValueError):
        seg_targets(mask[0], (8, 4))


def test_seg000_training_doctest():
    result = doctest.testmod(seg000_training)
    assert result.attempted > 0 and result.failed == 0


def test_freeze():
    seg = TinySeg().train()
    assert freeze(seg) is seg
    assert not seg.training and not any(p.requires_grad for p in seg.parameters())


def _schedule(steps: int, lr: float = 1e-2) -> Schedule:
    return Schedule(steps, lr, warmup=0.0)


def test_train_classifier_leaves_segnet_bit_identical(dataset):
    seg, clf = _models(1)
    train_segmentation(seg, dataset, schedule=_schedule(4), seed=0, progress=False)
    seg.train()  # as left by stage 1: BN would update its running stats if not frozen
    seg_before, clf_before = _params(seg), _params(clf)
    assert any("running_mean" in k for k in seg_before)
    train_classifier(seg, clf, dataset, schedule=_schedule(10), seed=0, progress=False)
    seg_after = _params(seg)
    assert seg_before.keys() == seg_after.keys()
    for key in seg_before:  # weights and BN running stats / counters
        assert torch.equal(seg_before[key], seg_after[key]), key
    assert not any(p.requires_grad for p in seg.parameters())
    assert not seg.training
    changed = [k for k, v in _params(clf).items() if not torch.equal(v, clf_before[k])]
    assert set(changed) == set(clf_before)


# --------------------------------------------------------------------------------------
# Batch plans: the alternating sampler's stream, the classifier's from seed + 1
# --------------------------------------------------------------------------------------


def test_alternating_plan_is_seeded_batches_of_the_sampler_stream(dataset):
    labels = dataset.table["label"].to_numpy()
    plan = alternating_plan(dataset, steps=7, batch_size=2, seed=3)
    assert len(plan) == 7 and all(len(b) == 2 for b in plan)
    assert [labels[b].tolist() for b in plan] == [[1, 0]] * 7
    stream = list(AlternatingSampler(labels, num_samples=14, generator=torch_generator(3)))
    assert [i for b in plan for i in b] == stream
    assert plan == alternating_plan(dataset, steps=7, batch_size=2, seed=3)
    assert plan != alternating_plan(dataset, steps=7, batch_size=2, seed=4)


def test_the_classifier_draws_its_plan_from_seed_plus_one(dataset, monkeypatch):
    plans = {}
    original = seg000_training.fit

    def spy(name, **kw):
        plans[name] = kw["plan"]
        return original(name, **kw)

    monkeypatch.setattr(seg000_training, "fit", spy)
    seg, clf = _models(0)
    train_segmentation(seg, dataset, schedule=_schedule(6), seed=5, progress=False)
    train_classifier(seg, clf, dataset, schedule=_schedule(6), seed=5, progress=False)
    assert plans["segmentation"] == alternating_plan(dataset, steps=6, batch_size=1, seed=5)
    assert plans["classifier"] == alternating_plan(dataset, steps=6, batch_size=1, seed=6)
    assert plans["segmentation"] != plans["classifier"]  # the stages see different sequences


# --------------------------------------------------------------------------------------
# The loop through the trainers: schedule, validation, history
# --------------------------------------------------------------------------------------


def test_the_schedule_sets_every_steps_learning_rate(dataset, monkeypatch):
    seen = []
    original = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    schedule = Schedule(10, 1e-2, warmup=0.3)
    seg, _ = _models(0)
    train_segmentation(seg, dataset, schedule=schedule, seed=0, progress=False)
    assert seen == pytest.approx([schedule.lr_at(i) for i in range(10)], rel=1e-12)
    assert seen[0] == pytest.approx(0.04 * 1e-2) and max(seen) == pytest.approx(1e-2) and seen[-1] == 0.0


def test_validation_runs_every_eval_every_steps_in_eval_mode_without_gradients(dataset):
    seg, clf = _models(0)
    seen = []

    def evaluate():
        seen.append((seg.training, torch.is_grad_enabled()))
        return {"n": float(len(seen))}

    history = train_segmentation(seg, dataset, schedule=_schedule(10), seed=0, evaluate=evaluate, eval_every=4,
                                 progress=False)
    assert isinstance(history, History) and len(history.losses) == 10 and history.seconds > 0
    assert history.evals == [{"step": 4.0, "n": 1.0}, {"step": 8.0, "n": 2.0}, {"step": 10.0, "n": 3.0}]
    assert seen == [(False, False)] * 3
    arrays = history.arrays("seg")
    assert arrays["seg_losses"].shape == (10,) and arrays["seg_eval_step"].tolist() == [4.0, 8.0, 10.0]
    assert arrays["seg_eval_n"].tolist() == [1.0, 2.0, 3.0]
    # eval_every=0: validation after the last step only
    clf_history = train_classifier(seg, clf, dataset, schedule=_schedule(5), seed=0, evaluate=lambda: {"x": 1},
                                   progress=False)
    assert clf_history.evals == [{"step": 5.0, "x": 1.0}]
    assert train_classifier(seg, clf, dataset, schedule=_schedule(3), seed=0, progress=False).evals == []


# --------------------------------------------------------------------------------------
# End to end on synthetic data
# --------------------------------------------------------------------------------------


def test_end_to_end_losses_fall_and_predict(dataset):
    seg, clf = _models(0)
    seg_losses = train_segmentation(seg, dataset, schedule=_schedule(60), seed=0, progress=False).losses
    assert len(seg_losses) == 60 and all(np.isfinite(seg_losses))
    assert np.mean(seg_losses[-10:]) < 0.6 * np.mean(seg_losses[:10])

    clf_losses = train_classifier(seg, clf, dataset, schedule=_schedule(60), seed=1, progress=False).losses
    assert len(clf_losses) == 60 and all(np.isfinite(clf_losses))
    assert np.mean(clf_losses[-10:]) < 0.6 * np.mean(clf_losses[:10])

    table, maps = predict(seg, clf, dataset, batch_size=3, keep_maps=True, progress=False)
    assert list(table.columns) == ["index", "score", "seg_max"]
    assert table["index"].tolist() == list(range(len(dataset)))
    assert table["score"].between(0, 1).all() and table["seg_max"].between(0, 1).all()
    assert sorted(maps) == list(range(len(dataset)))
    for index, prob in maps.items():
        assert prob.dtype == np.float16 and prob.shape == (8, 4)
        assert float(prob.max()) == pytest.approx(table.at[index, "seg_max"], abs=1e-3)
    # the trained pair separates the classes of this easy data
    labels = dataset.table["label"].to_numpy()
    assert table["score"][labels == 1].min() > table["score"][labels == 0].max()

    assert clf.training  # fit leaves the trained model in train mode ...
    plain = predict(seg, clf, dataset, progress=False)
    assert isinstance(plain, pd.DataFrame)
    pd.testing.assert_frame_equal(plain, table, atol=1e-5, rtol=0)
    assert not seg.training and clf.training  # ... and predict scores an eval-mode copy, leaving the modes alone
    # without a classifier: the map maximum only (validation of the segmentation stage)
    maps_only = predict(seg, None, dataset, progress=False)
    assert maps_only["score"].isna().all()
    np.testing.assert_allclose(maps_only["seg_max"], table["seg_max"], atol=1e-6)


def test_prediction_runs_on_a_fused_copy_and_leaves_the_models_alone(dataset):
    seg, clf = _models(0)
    train_segmentation(seg, dataset, schedule=_schedule(10), seed=0, progress=False)
    train_classifier(seg, clf, dataset, schedule=_schedule(10), seed=0, progress=False)
    before = _params(seg)
    fused = predict(seg, clf, dataset, progress=False)
    assert all(torch.equal(before[k], v) for k, v in _params(seg).items())  # BatchNorms still there
    assert any(isinstance(m, nn.BatchNorm2d) for m in seg.modules())
    # the same function as the unfused eval-mode networks, to float rounding
    with torch.inference_mode():
        for i in range(len(dataset)):
            features, logits = seg.eval()(dataset[i]["image"][None])
            expected = torch.sigmoid(clf.eval()(features, logits)).item()
            assert fused.at[i, "score"] == pytest.approx(expected, abs=1e-5)


def test_training_is_float32_throughout(dataset, monkeypatch):
    """No autocast any more: every forward pass of both stages computes in float32."""
    dtypes = set()
    original = TinySeg.forward

    def forward(self, x):
        out = original(self, x)
        dtypes.update({x.dtype, out.features.dtype, out.logits.dtype, torch.get_autocast_dtype("cpu")
                       if torch.is_autocast_enabled("cpu") else torch.float32})
        return out

    monkeypatch.setattr(TinySeg, "forward", forward)
    seg, clf = _models(0)
    train_segmentation(seg, dataset, schedule=_schedule(3), seed=0, progress=False)
    train_classifier(seg, clf, dataset, schedule=_schedule(3), seed=0, progress=False)
    predict(seg, clf, dataset, progress=False)
    assert dtypes == {torch.float32}
    assert all(p.dtype == torch.float32 for p in [*seg.parameters(), *clf.parameters()])


def test_same_seed_same_losses(dataset):
    runs = []
    for _ in range(2):
        seg, clf = _models(3)
        runs.append((train_segmentation(seg, dataset, schedule=_schedule(12), batch_size=2, seed=4,
                                        progress=False).losses,
                     train_classifier(seg, clf, dataset, schedule=_schedule(12), seed=4, progress=False).losses))
    assert runs[0] == runs[1]
    seg, _ = _models(3)
    other = train_segmentation(seg, dataset, schedule=_schedule(12), batch_size=2, seed=5, progress=False).losses
    assert other != runs[0][0]  # the seed changes the sample order


def test_non_finite_loss_raises_with_step_and_lr(dataset):
    with pytest.raises(FloatingPointError, match=r"segmentation: non-finite loss .*step 1 of 5 .*lr=0\.001"):
        train_segmentation(NaNSeg(), dataset, schedule=_schedule(5, 1e-3), seed=0, progress=False)
    seg, clf = _models(0)
    with pytest.raises(FloatingPointError, match=r"classifier: non-finite loss .*step 1 of 5 .*lr=0\.001"):
        train_classifier(NaNSeg(), clf, dataset, schedule=_schedule(5, 1e-3), seed=0, progress=False)
    seg, clf = _models(0)
    before = _params(seg)
    with pytest.raises(FloatingPointError, match=r"segmentation: non-finite loss .*lr=1e\+30"):
        train_segmentation(seg, dataset, schedule=Schedule(50, 1e30, warmup=0.0, final=1.0), seed=0, progress=False)
    assert any(not torch.equal(before[k], v) for k, v in _params(seg).items())  # it did train until then


@pytest.mark.parametrize("make, match", [
    (lambda: {"schedule": Schedule(0, 1e-3)}, "steps"),
    (lambda: {"schedule": Schedule(2, 0.0)}, "lr"),
    (lambda: {"schedule": Schedule(2, float("nan"))}, "lr"),
    (lambda: {"schedule": Schedule(2, 1e-3, warmup=1.0)}, "warmup"),
    (lambda: {"schedule": Schedule(2, 1e-3), "batch_size": 0}, "batch_size"),
])
def test_bad_arguments(dataset, make, match):
    with pytest.raises(ValueError, match=match):
        train_segmentation(TinySeg(), dataset, seed=0, progress=False, **make())


def test_dataset_without_labels_is_rejected():
    with pytest.raises(TypeError, match="label"):
        train_segmentation(TinySeg(), [torch.zeros(1)], schedule=_schedule(1, 1e-3), seed=0, progress=False)


# --------------------------------------------------------------------------------------
# A stalled classifier is trained again from new weights
# --------------------------------------------------------------------------------------


def _two_stages(dataset, tmp_path, **kw):
    seg, clf = _models(0)
    stages = seg000_training.train_two_stages(
        seg, clf, dataset, dataset, seg_schedule=_schedule(4), clf_schedule=_schedule(6), threshold=0.9,
        map_threshold=0.5, seed=3, checkpoints=tmp_path, progress=False, **kw)
    return stages, _params(clf)


def test_a_stalled_classifier_is_trained_again_from_new_weights(dataset, tmp_path, monkeypatch):
    plain, plain_weights = _two_stages(dataset, tmp_path / "plain")
    assert plain.stalled_clf == [] and not (tmp_path / "plain" / "classifier-restart1.pt").exists()
    # the first attempt is judged stalled, the second is not
    verdicts = iter([True, False])
    monkeypatch.setattr(loop_module, "stalled", lambda history: next(verdicts))
    again, weights = _two_stages(dataset, tmp_path / "again")
    assert len(again.stalled_clf) == 1 and (tmp_path / "again" / "classifier-restart1.pt").is_file()
    assert again.stalled_clf[0].losses == plain.clf.losses  # the first attempt is the plain run
    assert again.clf.losses != plain.clf.losses and weights.keys() == plain_weights.keys()
    assert any(not torch.equal(weights[k], plain_weights[k]) for k in weights)
    assert again.seconds == pytest.approx(again.seg.seconds + again.clf.seconds + again.stalled_clf[0].seconds)
    # read back from the checkpoints: the same attempts, the same final classifier
    verdicts = iter([True, False])
    resumed, resumed_weights = _two_stages(dataset, tmp_path / "again")
    assert resumed.clf.losses == again.clf.losses and len(resumed.stalled_clf) == 1
    assert all(torch.equal(resumed_weights[k], weights[k]) for k in weights)
    # never more than ``restarts`` times
    monkeypatch.setattr(loop_module, "stalled", lambda history: True)
    capped, _ = _two_stages(dataset, tmp_path / "capped", restarts=2)
    assert len(capped.stalled_clf) == 2


def test_reinitialise_is_seeded_and_leaves_the_global_random_state():
    _, first = _models(0)
    _, second = _models(1)
    state = torch.random.get_rng_state()
    seg000_training.reinitialise(first, seed=7)
    seg000_training.reinitialise(second, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    a, b = _params(first), _params(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    seg000_training.reinitialise(second, seed=8)
    assert any(not torch.equal(a[k], v) for k, v in _params(second).items())
