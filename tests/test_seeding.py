"""Tests for defectlib.seeding: repeatable draws, bit-identical tiny CPU trainings (with and
without DataLoader workers), worker seeding, and seed validation."""

import os
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from defectlib.seeding import seed_everything, torch_generator, worker_init_fn


@pytest.fixture(autouse=True)
def restore_global_state(monkeypatch):
    """seed_everything changes process-wide state; give it back after each test."""
    for name in ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    torch.set_rng_state(torch_state)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark


def draws():
    return (
        [random.random() for _ in range(3)],
        np.random.rand(3).tolist(),
        np.random.randint(0, 2**31, size=2).tolist(),
        torch.rand(3).tolist(),
        torch.randn(2, 2).tolist(),
    )


def test_seed_everything_repeats_random_numpy_torch():
    seed_everything(123)
    first = draws()
    seed_everything(123)
    assert draws() == first
    seed_everything(124)
    other = draws()
    for a, b in zip(first, other):  # every generator follows the seed, not just one of them
        assert a != b


def test_seed_everything_large_seed_and_zero():
    seed_everything(2**40 + 5)
    a = draws()
    seed_everything(2**40 + 5)
    assert draws() == a
    seed_everything(0)
    b = draws()
    seed_everything(0)
    assert draws() == b


def test_seed_everything_sets_determinism_flags():
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    seed_everything(3)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.benchmark is False
    assert os.environ["PYTHONHASHSEED"] == "3"
    assert "CUBLAS_WORKSPACE_CONFIG" in os.environ


def test_seed_everything_not_deterministic_leaves_flags():
    torch.use_deterministic_algorithms(False)
    seed_everything(3, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("seed", [-1, 1.5, 1.0, "1", None, np.float64(2.0), [1]])
def test_invalid_seed_raises_value_error(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        seed_everything(seed)


def test_torch_generator_repeats():
    a = torch.randperm(20, generator=torch_generator(5))
    b = torch.randperm(20, generator=torch_generator(5))
    c = torch.randperm(20, generator=torch_generator(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_torch_generator_independent_of_global_state():
    torch.manual_seed(1)
    a = torch.randperm(20, generator=torch_generator(5))
    torch.manual_seed(2)
    torch.rand(10)
    assert torch.equal(a, torch.randperm(20, generator=torch_generator(5)))


def test_worker_init_fn_seeds_from_torch_initial_seed():
    torch.manual_seed(2**33 + 7)  # larger than numpy's 32-bit seed range
    worker_init_fn(0)
    a = (random.random(), np.random.rand())
    torch.manual_seed(2**33 + 7)
    worker_init_fn(1)
    assert (random.random(), np.random.rand()) == a
    torch.manual_seed(2**33 + 8)
    worker_init_fn(0)
    assert (random.random(), np.random.rand()) != a


# -- a tiny training ------------------------------------------------------------------------


class NoisyImages(Dataset):
    """Fixed 1×16×16 images plus noise drawn from NumPy's global RNG in __getitem__ (as an
    augmentation would), so worker-side randomness reaches the training."""

    def __init__(self, n=40):
        rng = np.random.default_rng(0)
        self.images = rng.random((n, 1, 16, 16)).astype(np.float32)
        self.targets = (self.images.mean(axis=(1, 2, 3)) > 0.5).astype(np.float32)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        noise = np.random.normal(0.0, 0.1, size=self.images[index].shape).astype(np.float32)
        return torch.from_numpy(self.images[index] + noise), torch.tensor(self.targets[index]), index


def make_net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 1, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(0),
    )


def train(seed, num_workers, generator_seed=None, disturb=False):
    """10 Adam steps (one epoch of 40 samples, batch 4); losses, weights and sample order.

    ``disturb`` draws from NumPy's and Python's global RNGs after seeding (not from torch's,
    so the model's initialisation is unchanged).
    """
    seed_everything(seed)
    net = make_net()
    if disturb:
        np.random.rand(1000)
        random.random()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    loader = DataLoader(
        NoisyImages(),
        batch_size=4,
        shuffle=True,
        generator=torch_generator(seed if generator_seed is None else generator_seed),
        worker_init_fn=worker_init_fn,
        num_workers=num_workers,
    )
    losses, order, inputs = [], [], []
    for x, y, index in loader:
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(net(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach().clone())
        order.extend(index.tolist())
        inputs.append(x.clone())
    assert len(losses) == 10
    return {
        "losses": torch.stack(losses),
        "weights": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "order": order,
        "inputs": torch.cat(inputs),
    }


def assert_identical(a, b):
    assert a["order"] == b["order"]
    assert torch.equal(a["inputs"], b["inputs"])
    assert torch.equal(a["losses"], b["losses"])
    assert a["weights"].keys() == b["weights"].keys()
    for name in a["weights"]:
        assert torch.equal(a["weights"][name], b["weights"][name]), name


def assert_different(a, b):
    assert a["order"] != b["order"]
    assert not torch.equal(a["losses"], b["losses"])
    assert any(not torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_training_bit_identical_for_same_seed(num_workers):
    first = train(11, num_workers)
    second = train(11, num_workers)
    assert_identical(first, second)
    assert_different(first, train(12, num_workers))


def test_worker_noise_follows_the_generator_not_parent_numpy_state():
    # Same seed, but the parent's NumPy (and random) state moved on before the epoch: the
    # workers' draws depend on the loader's generator alone. (torch >= 1.9 already seeds
    # NumPy in each worker from the base seed; worker_init_fn re-seeds from the same base
    # seed, so the training tests cannot tell it apart -- the unit test above covers it.)
    assert_identical(train(11, 2), train(11, 2, disturb=True))
    # In the main process (no workers) the noise comes from the parent's NumPy state.
    assert not torch.equal(train(11, 0)["inputs"], train(11, 0, disturb=True)["inputs"])


def test_worker_noise_changes_with_the_generator():
    a, c = train(11, 2, generator_seed=5), train(11, 2, generator_seed=6)
    # Compare the inputs per image (undoing the shuffle): the noise differs, not just the order.
    a_inputs = a["inputs"][np.argsort(a["order"])]
    c_inputs = c["inputs"][np.argsort(c["order"])]
    assert not torch.allclose(a_inputs, c_inputs)


def test_workers_draw_different_noise():
    # Each worker is seeded differently (base seed + worker id): the two workers'
    # noise for the same image would otherwise repeat batch by batch.
    seed_everything(0)
    dataset = NoisyImages(8)
    loader = DataLoader(
        dataset, batch_size=1, shuffle=False, num_workers=2,
        generator=torch_generator(0), worker_init_fn=worker_init_fn,
    )
    noise = [(x[0] - torch.from_numpy(dataset.images[i[0].item()])) for x, _, i in loader]
    # Batches alternate between workers 0 and 1: the first draws of each must differ.
    assert not torch.allclose(noise[0], noise[1])
    assert not torch.allclose(noise[2], noise[3])


def _train_proposed(steps=3):
    """A few SGD steps of the proposed network (its SE blocks included) on fixed random data."""
    from defectlib.models.seg000_proposed import lightweight_segnet

    seed_everything(0)
    net = lightweight_segnet()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.rand(1, 1, 64, 32, generator=generator)
        y = (torch.rand(1, 1, 8, 4, generator=generator) > 0.8).float()
        loss = nn.functional.binary_cross_entropy_with_logits(net(x).logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_proposed_network_bit_identical_at_one_thread():
    """The book's recipe for bit-identical re-runs of the proposed network (reproducibility
    page: its SE blocks' backward is not deterministic at two threads on some CPUs; on a 2-core
    Xeon the same two trainings at two threads differed in three tries of three)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first, second = _train_proposed(), _train_proposed()
    finally:
        torch.set_num_threads(threads)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
