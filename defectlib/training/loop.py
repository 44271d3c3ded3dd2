"""The training loop every network of the study goes through.

:func:`fit` runs a fixed number of optimiser steps over a precomputed *plan* of batches (lists
of dataset indices), with the learning rate of a :class:`Schedule` (linear warm-up, then cosine
decay), a validation callback every ``eval_every`` steps, and a :class:`Checkpoint` written
every few minutes. A stopped run resumes from its last checkpoint and continues the same batch
plan with the same random streams, so at one thread it ends where an uninterrupted run ends.

What the loop needs from a trainer:

``step_fn(batch) -> loss``
    The loss of one batch (a scalar tensor with a graph). The loop zeroes the gradients,
    back-propagates and steps the optimiser; a non-finite loss raises
    :class:`FloatingPointError` before the update, naming the step and the learning rate.
``evaluate() -> dict``
    Validation figures (numbers), recorded with the step; called with the models in eval
    mode and under :func:`torch.no_grad`, and the models put back in train mode after.

Random streams: the plan of batches is drawn before training, so it does not depend on where a
run was resumed; every other stream the trainer uses (torch's global RNG for augmentation and
initialisation, generators for block or crop selection) is saved in the checkpoint and
restored on resume.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..seeding import torch_generator, worker_init_fn

log = logging.getLogger(__name__)

#: Steps between progress-bar updates of the running mean loss.
LOG_EVERY = 50
#: Seconds between checkpoints (the last step of a stage is always saved too).
CHECKPOINT_EVERY_S = 300.0


@dataclass(frozen=True)
class Schedule:
    """Learning rate against step: linear warm-up to ``lr``, then cosine decay to ``lr * final``.

    Parameters
    ----------
    steps : int
        Optimiser steps in all.
    lr : float
        The peak learning rate.
    warmup : float
        Fraction of the steps spent warming up from ``lr * start`` to ``lr``.
    start, final : float
        The learning rate at step 0 and at the last step, as fractions of ``lr``.

    Examples
    --------
    >>> s = Schedule(steps=100, lr=0.01, warmup=0.1)
    >>> round(s.lr_at(0), 6), round(s.lr_at(10), 6), round(s.lr_at(99), 8)
    (0.0004, 0.01, 0.0)
    >>> Schedule(steps=4, lr=0.5, warmup=0.0, final=1.0).lr_at(3)
    0.5
    """

    steps: int
    lr: float
    warmup: float = 0.1
    start: float = 0.04
    final: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be a fraction in [0, 1), got {self.warmup!r}")
        if not (0 <= self.start <= 1 and 0 <= self.final <= 1):
            raise ValueError(f"start and final must be fractions of lr in [0, 1], got {self.start}, {self.final}")

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based)."""
        warm = int(round(self.warmup * self.steps))
        if step < warm:
            return self.lr * (self.start + (1 - self.start) * step / warm)
        span = max(self.steps - 1 - warm, 1)
        progress = min(max(step - warm, 0) / span, 1.0)
        return self.lr * (self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class History:
    """What a run of :func:`fit` leaves: the loss of every step and the validation records."""

    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The history as named arrays (``<prefix>_losses``, ``<prefix>_eval_step``,
        ``<prefix>_eval_<name>``) for a run's artifacts."""
        out = {f"{prefix}_losses": np.asarray(self.losses, np.float32)}
        names = sorted({k for record in self.evals for k in record})
        for name in names:
            key = "eval_step" if name == "step" else f"eval_{name}"
            out[f"{prefix}_{key}"] = np.asarray([r.get(name, math.nan) for r in self.evals], np.float64)
        return out


class Checkpoint:
    """A file that holds a stage's training state, written atomically every few minutes.

    Parameters
    ----------
    path : path-like
        The checkpoint file (its folder is made on first save).
    every_s : float
        Seconds between saves; :meth:`due` says when one is due.
    """

    def __init__(self, path: str | os.PathLike, *, every_s: float = CHECKPOINT_EVERY_S) -> None:
        self.path = Path(path)
        self.every_s = float(every_s)
        self._last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, state: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            torch.save(dict(state), tmp)
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        self._last = time.monotonic()

    def load(self) -> dict[str, Any]:
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def plan_batches(sampler: Iterable, *, batch_size: int = 1) -> list[list[int]]:
    """The whole stream of a sampler as batches of indices, drawn before training.

    A sampler that yields lists (a batch sampler) gives its batches; one that yields single
    indices is grouped ``batch_size`` at a time (a last short group is dropped).

    Examples
    --------
    >>> plan_batches([3, 1, 4, 1, 5], batch_size=2)
    [[3, 1], [4, 1]]
    >>> plan_batches([[0, 1], [2, 3]])
    [[0, 1], [2, 3]]
    """
    items = list(sampler)
    if items and isinstance(items[0], (list, tuple)):
        return [list(map(int, b)) for b in items]
    n = len(items) // batch_size
    return [list(map(int, items[i * batch_size:(i + 1) * batch_size])) for i in range(n)]


def _rng_state(generators: Mapping[str, torch.Generator]) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "generators": {name: g.get_state() for name, g in generators.items()},
    }


def _restore_rng(state: Mapping[str, Any], generators: Mapping[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    for name, g in generators.items():
        g.set_state(state["generators"][name])


def _check_finite(name: str, loss: torch.Tensor, step: int, steps: int, lr: float) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(
            f"{name}: non-finite loss ({value}) at step {step} of {steps} with learning rate "
            f"lr={lr:g}; the run diverged (try a lower lr) or the model produced NaN/inf"
        )
    return value


def fit(
    name: str,
    *,
    models: Sequence[nn.Module],
    optimizer: torch.optim.Optimizer,
    dataset,
    plan: Sequence[Sequence[int]],
    step_fn: Callable[[dict], torch.Tensor],
    schedule: Schedule,
    evaluate: Callable[[], dict[str, float]] | None = None,
    eval_every: int = 0,
    checkpoint: Checkpoint | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> History:
    """Train for ``len(plan)`` steps (= ``schedule.steps``); resume from ``checkpoint`` if it holds one.

    Parameters
    ----------
    name : str
        For the progress bar and error messages.
    models : sequence of nn.Module
        The modules whose state is trained (and checkpointed); they are put in train mode.
    optimizer : torch.optim.Optimizer
        Over the trained parameters; its learning rate is set from ``schedule`` every step.
    dataset, plan
        The training set and the batches of indices of every step (:func:`plan_batches`).
    step_fn : callable
        ``step_fn(batch) -> loss`` (see the module notes).
    schedule : Schedule
        The learning rate of every step.
    evaluate : callable, optional
        Validation every ``eval_every`` steps and after the last step.
    checkpoint : Checkpoint, optional
        Where the state is saved every ``checkpoint.every_s`` seconds and after the last step.
        A checkpoint that holds a finished stage returns its history without training.
    generators : mapping of str to torch.Generator, optional
        Random streams of the trainer, saved and restored with the checkpoint.

    Returns
    -------
    History
        The loss of every step and the validation records (``step`` plus ``evaluate()``'s).
    """
    if len(plan) != schedule.steps:
        raise ValueError(f"{name}: the plan has {len(plan)} batches for a schedule of {schedule.steps} steps")
    generators = dict(generators or {})
    history = History()
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = checkpoint.load()
        for model, weights in zip(models, state["models"]):
            model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        _restore_rng(state["rng"], generators)
        history = History(losses=list(state["losses"]), evals=list(state["evals"]), seconds=float(state["seconds"]))
        start = int(state["step"])
        log.info("%s: resumed at step %d of %d from %s", name, start, schedule.steps, checkpoint.path)

    def snapshot(step: int) -> dict[str, Any]:
        return {"step": step, "models": [m.state_dict() for m in models], "optimizer": optimizer.state_dict(),
                "rng": _rng_state(generators), "losses": history.losses, "evals": history.evals,
                "seconds": history.seconds}

    def validate(step: int) -> None:
        if evaluate is None:
            return
        for m in models:
            m.eval()
        with torch.no_grad():
            record = {"step": float(step), **{k: float(v) for k, v in evaluate().items()}}
        for m in models:
            m.train()
        history.evals.append(record)
        log.info("%s: step %d/%d, loss %.4f (mean of the last %d), validation %s", name, step, schedule.steps,
                 float(np.mean(history.losses[-LOG_EVERY:])) if history.losses else float("nan"), LOG_EVERY,
                 ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "step"))

    if start >= schedule.steps:
        return history
    for m in models:
        m.train()
    # The loader gets a generator of its own: drawing its base seed from torch's global RNG would
    # shift the augmentation stream of a resumed run by one draw.
    loader = DataLoader(dataset, batch_sampler=[list(b) for b in plan[start:]], num_workers=num_workers,
                        worker_init_fn=worker_init_fn, generator=torch_generator(start))
    clock = time.perf_counter()
    with tqdm(total=schedule.steps, initial=start, desc=name, leave=False, disable=not progress) as bar:
        for step, batch in enumerate(loader, start=start):
            lr = schedule.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = step_fn(batch)
            value = _check_finite(name, loss, step + 1, schedule.steps, lr)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.losses.append(value)
            done = step + 1
            bar.update(1)
            if done % LOG_EVERY == 0 or done == schedule.steps:
                bar.set_postfix(loss=f"{np.mean(history.losses[-LOG_EVERY:]):.4f}", lr=f"{lr:.2g}")
            if evaluate is not None and eval_every and (done % eval_every == 0) and done != schedule.steps:
                validate(done)
            if checkpoint is not None and checkpoint.due() and done != schedule.steps:
                history.seconds += time.perf_counter() - clock
                clock = time.perf_counter()
                checkpoint.save(snapshot(done))
    validate(schedule.steps)
    history.seconds += time.perf_counter() - clock
    if checkpoint is not None:
        checkpoint.save(snapshot(schedule.steps))
    return history


#: A stage has stalled when the mean training loss of its last tenth of steps is above this:
#: half of ln 2, the loss of a constant guess under a two-class cross-entropy on balanced
#: batches (seed 000's classifier and seed 004's recognition networks, which use the rule).
STALLED_LOSS = math.log(2) / 2
#: Shorter stages are not judged: over a few steps a loss near ln 2 is expected.
STALL_MIN_STEPS = 200
#: How many times :func:`retrain_while_stalled` trains a stalled stage again by default.
RESTARTS = 2


def last_tenth_loss(losses) -> float:
    """The mean training loss over the last tenth of a stage's steps (at least the last one),
    the figure :func:`stalled` judges.

    Examples
    --------
    >>> last_tenth_loss([0.69] * 90 + [0.2] * 10)
    0.2
    """
    losses = np.asarray(losses, dtype=float)
    return float(np.mean(losses[-max(1, len(losses) // 10):]))


def stalled(history: History, *, min_steps: int = STALL_MIN_STEPS, loss: float = STALLED_LOSS) -> bool:
    """Whether a stage's training loss ended above ``loss`` (by default half that of a
    constant guess): over at least ``min_steps`` steps, the mean loss of its last tenth. It
    reads the training loss only, never validation or test images.

    Examples
    --------
    >>> stalled(History(losses=[0.69] * 900 + [0.55] * 100))
    True
    >>> stalled(History(losses=[0.69] * 300 + [0.01] * 700))
    False
    >>> stalled(History(losses=[0.69] * 50))  # too short to judge
    False
    """
    if len(history.losses) < min_steps:
        return False
    return last_tenth_loss(history.losses) > loss


def retrain_while_stalled(train: Callable[[int], History], *, restarts: int = RESTARTS,
                          name: str = "training",
                          restore: Callable[[int], History] | None = None) -> tuple[History, list[History]]:
    """Train a stage, and train it again from new weights while it has :func:`stalled`.

    ``train(attempt)`` trains the stage and returns its history: attempt 0 first, then, while
    the last attempt stalled, attempts 1, 2, ... up to ``restarts``. Attempt ``n > 0`` must
    draw the network's weights again (seeded by ``n``) and checkpoint apart from the others,
    so that a resumed run reads finished attempts back and ends where an uninterrupted one
    does. A stage that trained normally at the first attempt is left exactly as it was.

    The last attempt is kept unless every attempt stalled; then the one with the lowest
    :func:`last_tenth_loss` is kept (the first of equals), provided ``restore(attempt)`` can
    put that finished attempt's network back (for example by reading its checkpoint back) and
    return its history. Without ``restore`` the last attempt is kept.

    Returns the kept attempt's history and the others', in order.

    Examples
    --------
    >>> tries = iter([History(losses=[0.69] * 300), History(losses=[0.69] * 100 + [0.05] * 200)])
    >>> kept, failed = retrain_while_stalled(lambda attempt: next(tries))
    >>> len(failed), kept.losses[-1]
    (1, 0.05)
    >>> stalls = [History(losses=[0.6] * 300), History(losses=[0.5] * 300), History(losses=[0.65] * 300)]
    >>> kept, failed = retrain_while_stalled(lambda attempt: stalls[attempt], restore=lambda attempt: stalls[attempt])
    >>> kept.losses[-1], [h.losses[-1] for h in failed]
    (0.5, [0.6, 0.65])
    """
    attempts = [train(0)]
    while (last_stalled := stalled(attempts[-1])) and len(attempts) <= restarts:
        log.warning("%s stalled (mean loss of the last tenth %.3f); training it again from new weights "
                    "(%d of at most %d)", name, last_tenth_loss(attempts[-1].losses), len(attempts), restarts)
        attempts.append(train(len(attempts)))
    kept = len(attempts) - 1
    if restore is not None and len(attempts) > 1 and last_stalled:
        best = min(range(len(attempts)), key=lambda n: last_tenth_loss(attempts[n].losses))
        if best != kept:
            log.warning("%s: every attempt stalled; keeping attempt %d, whose training loss ended lowest", name, best)
            attempts[best], kept = restore(best), best
    return attempts[kept], attempts[:kept] + attempts[kept + 1:]


def dataset_labels(dataset) -> np.ndarray:
    """The 0/1 labels of a dataset's sample table (``dataset.table["label"]``)."""
    table = getattr(dataset, "table", None)
    if table is None or "label" not in table:
        raise TypeError(
            f"the dataset must have a sample table with a 'label' column (.table['label']), "
            f"like SurfaceDataset; got {type(dataset).__name__}"
        )
    return table["label"].to_numpy()


def ordered_loader(dataset, *, batch_size: int = 1, num_workers: int = 0) -> DataLoader:
    """The items of ``dataset`` in order, in batches (for prediction)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      worker_init_fn=worker_init_fn, generator=torch_generator(0))


__all__ = ["CHECKPOINT_EVERY_S", "Checkpoint", "History", "LOG_EVERY", "RESTARTS", "STALLED_LOSS", "STALL_MIN_STEPS",
           "Schedule", "dataset_labels", "fit", "ordered_loader", "plan_batches", "retrain_while_stalled", "stalled"]
