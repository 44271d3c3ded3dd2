"""The training loop: schedule, checkpoints, and a resumed run equal to an uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defectlib.data.augment import Augmentation
from defectlib.data.dataset import SurfaceDataset
from defectlib.data.synthetic import SyntheticSpec, synthetic_samples
from defectlib.models import build_model
from defectlib.seeding import seed_everything
from defectlib.training import Checkpoint, Schedule, train_recognition, train_segmentation
from defectlib.training import loop


def test_schedule_warms_up_then_decays_to_final():
    s = Schedule(steps=200, lr=1e-2, warmup=0.1)
    rates = np.array([s.lr_at(i) for i in range(200)])
    assert rates.argmax() == 20 and rates[20] == pytest.approx(1e-2)
    assert np.all(np.diff(rates[:21]) > 0) and np.all(np.diff(rates[20:]) <= 0)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="warmup"):
        Schedule(steps=10, lr=1.0, warmup=1.5)


class Interrupt(Exception):
    pass


def _stop_after(monkeypatch, steps: int):
    """Make the loop raise after ``steps`` optimiser steps (checkpointing at every step)."""
    calls = {"n": 0}
    original = loop.Checkpoint.save

    def save(self, state):
        original(self, state)
        calls["n"] += 1
        if calls["n"] >= steps:
            raise Interrupt

    monkeypatch.setattr(loop.Checkpoint, "save", save)
    return lambda: monkeypatch.setattr(loop.Checkpoint, "save", original)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return synthetic_samples(tmp_path_factory.mktemp("synthetic"), spec=SyntheticSpec(n_images=24, seed=3))


def _train_seg(table, checkpoint):
    seed_everything(0)
    net = build_model("seg000/proposed")
    data = SurfaceDataset(table, size=(64, 32))
    history = train_segmentation(net, data, schedule=Schedule(12, 1e-3), seed=0, checkpoint=checkpoint,
                                 evaluate=lambda: {"x": 1.0}, eval_every=4, progress=False)
    return net, history


def test_resumed_segmentation_equals_uninterrupted(table, tmp_path, monkeypatch):
    reference, ref_history = _train_seg(table, None)
    restore = _stop_after(monkeypatch, 5)
    with pytest.raises(Interrupt):
        _train_seg(table, Checkpoint(tmp_path / "c.pt", every_s=0))
    restore()
    assert torch.load(tmp_path / "c.pt", weights_only=False)["step"] == 5
    resumed, history = _train_seg(table, Checkpoint(tmp_path / "c.pt", every_s=0))
    assert history.losses == ref_history.losses
    assert [e["step"] for e in history.evals] == [4.0, 8.0, 12.0]
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def _train_dr(table, checkpoint):
    seed_everything(0)
    net = build_model("rec004/dr", find_weights=False)
    data = SurfaceDataset(table, size=(64, 64), transform=Augmentation())
    history = train_recognition(net, data, method="dr", schedule=Schedule(6, 1e-3), pairs_per_batch=1,
                                blocks_per_class=2, seed=0, checkpoint=checkpoint, progress=False)
    return net, history


def test_resumed_augmented_recognition_equals_uninterrupted(table, tmp_path, monkeypatch):
    """Augmentation draws from torch's global RNG: the checkpoint carries it over."""
    _, ref_history = _train_dr(table, None)
    restore = _stop_after(monkeypatch, 3)
    with pytest.raises(Interrupt):
        _train_dr(table, Checkpoint(tmp_path / "d.pt", every_s=0))
    restore()
    _, history = _train_dr(table, Checkpoint(tmp_path / "d.pt", every_s=0))
    assert history.losses == ref_history.losses


def test_finished_checkpoint_returns_without_training(table, tmp_path):
    _, first = _train_seg(table, Checkpoint(tmp_path / "e.pt"))
    net, again = _train_seg(table, Checkpoint(tmp_path / "e.pt"))
    assert again.losses == first.losses and again.seconds == first.seconds


def test_plan_must_match_schedule(table):
    net = build_model("seg000/proposed")
    with pytest.raises(ValueError, match="plan has 2 batches"):
        loop.fit("x", models=[net], optimizer=torch.optim.Adam(net.parameters()), dataset=None,
                 plan=[[0], [1]], step_fn=lambda b: None, schedule=Schedule(3, 1e-3), progress=False)


def test_retrain_while_stalled_keeps_the_lowest_loss_when_every_attempt_stalls_and_can_be_restored():
    from defectlib.training.loop import History, retrain_while_stalled

    losses = [0.6, 0.4, 0.5]  # all above the stall line, attempt 1 ends lowest
    trained, restored = [], []

    def train(attempt):
        trained.append(attempt)
        return History(losses=[0.69] * 100 + [losses[attempt]] * 200)

    def restore(attempt):
        restored.append(attempt)
        return History(losses=[0.69] * 100 + [losses[attempt]] * 200)

    kept, others = retrain_while_stalled(train, restore=restore)
    assert trained == [0, 1, 2] and restored == [1]
    assert kept.losses[-1] == 0.4 and [h.losses[-1] for h in others] == [0.6, 0.5]
    # without a way to put an earlier network back, the last attempt is kept
    kept, others = retrain_while_stalled(train)
    assert kept.losses[-1] == 0.5 and [h.losses[-1] for h in others] == [0.6, 0.4]
    # an attempt that did not stall is kept as it is, never restored
    losses[1] = 0.1
    restored.clear()
    kept, others = retrain_while_stalled(train, restore=restore)
    assert kept.losses[-1] == 0.1 and len(others) == 1 and restored == []
