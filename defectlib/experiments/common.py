"""Pieces the experiments share: the device, choice-checked config fields, the fold loop.

:func:`one_of` and :func:`all_of` build field types that accept only names from a set (a
model, a dataset; a list of them), so a config rejects a misspelt name at once, with the
choices in the message. :func:`cross_validate` is the resumable k-fold loop of a grid cell:
train and test every fold not yet saved, then finish the run (or read a finished one back).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import AfterValidator, model_validator
from tqdm.auto import tqdm

from ..allocator import heap_policy, retain_freed_memory
from ..config import ExperimentConfig
from ..data import load_samples
from ..data.folds import ensure_folds
from ..results import Run, RunResult

#: ``train_fold(cfg, table, folds, fold, current, *, progress)``: the test fold's samples table.
TrainFold = Callable[..., pd.DataFrame]


class CrossValidatedConfig(ExperimentConfig):
    """A grid cell tested by k-fold cross-validation (:func:`cross_validate`).

    Subclasses define ``dataset``, ``n_folds`` and ``folds_seed``. ``test_folds`` (default
    None: all) runs only some of the folds as test folds, each still trained on all the
    others: a cheaper run for a check (the performance chapter's budget comparisons), never
    a replacement for the full cell.
    """

    LATE_FIELDS: ClassVar[dict] = {"test_folds": None}

    test_folds: list[int] | None = None

    @model_validator(mode="after")
    def _test_folds(self):
        folds = self.test_folds
        if folds is not None and (
            not folds or len(set(folds)) != len(folds) or not all(0 <= f < self.n_folds for f in folds)
        ):
            raise ValueError(f"test_folds must be distinct fold numbers in 0..{self.n_folds - 1}, got {folds}")
        return self

    def fold_numbers(self) -> list[int]:
        """The test folds this config runs (all by default)."""
        return list(self.test_folds) if self.test_folds is not None else list(range(self.n_folds))


def device() -> str:
    """``"cuda"`` when a GPU is available, else ``"cpu"``.

    Examples
    --------
    >>> device() in ("cuda", "cpu")
    True
    """
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def one_of(options: Collection[str], what: str) -> Any:
    """A ``str`` field type that accepts only a name in ``options``.

    Parameters
    ----------
    options : collection of str
        The valid names, listed in this order in the error message (a dict: its keys). It is
        kept, not copied: membership is checked against it when a value is validated.
    what : str
        What a name is (``"model"``), for the error message.

    Returns
    -------
    typing.Annotated
        ``Annotated[str, AfterValidator(...)]``, to annotate a pydantic field with. The
        validator changes nothing else: serialisation, defaults and strictness are those of
        a plain ``str`` field (defaults are not validated).

    Examples
    --------
    >>> from pydantic import BaseModel
    >>> class Cell(BaseModel):
    ...     model: one_of(("unet", "fcn"), "model") = "unet"
    >>> Cell(model="fcn").model
    'fcn'
    >>> try:
    ...     Cell(model="vgg")
    ... except ValueError as err:  # pydantic's ValidationError
    ...     print(err.errors()[0]["msg"])
    Value error, unknown model 'vgg'; choose one of unet, fcn
    """

    def check(value: str) -> str:
        if value not in options:
            raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(options)}")
        return value

    return Annotated[str, AfterValidator(check)]


def all_of(options: Collection[str], what: str, *, allow_empty: bool = False) -> Any:
    """A ``list[str]`` field type whose every item is a name in ``options``.

    Parameters
    ----------
    options : collection of str
        The valid names, listed in this order in the error message (a dict: its keys).
    what : str
        What the items are, plural (``"datasets"``), for the error message.
    allow_empty : bool, optional
        Accept an empty list (by default an empty list is an error too).

    Returns
    -------
    typing.Annotated
        ``Annotated[list[str], AfterValidator(...)]``; the message names the unknown items.

    Examples
    --------
    >>> from pydantic import BaseModel
    >>> class Grid(BaseModel):
    ...     models: all_of(("unet", "fcn"), "models")
    >>> Grid(models=["fcn", "unet"]).models
    ['fcn', 'unet']
    >>> try:
    ...     Grid(models=["fcn", "vgg"])
    ... except ValueError as err:
    ...     print(err.errors()[0]["msg"])
    Value error, unknown or no models ['vgg']; choose from unet, fcn
    """

    def check(value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in options]
        if unknown or not (value or allow_empty):
            problem = "unknown" if allow_empty else "unknown or no"
            raise ValueError(f"{problem} {what} {unknown}; choose from {', '.join(options)}")
        return value

    return Annotated[list[str], AfterValidator(check)]


def fold_metrics(samples: pd.DataFrame, metrics: Callable[[pd.DataFrame], dict]) -> dict:
    """``metrics`` of all ``samples`` together, and under ``per_fold`` of each test fold.

    Parameters
    ----------
    samples : pandas.DataFrame
        The run's samples, with a ``fold`` column.
    metrics : callable
        ``metrics(samples) -> dict``.

    Returns
    -------
    dict
        ``metrics(samples)`` plus ``per_fold``: ``{str(fold): metrics(rows of that fold)}``.

    Examples
    --------
    >>> s = pd.DataFrame({"fold": [0, 0, 1], "label": [1, 0, 1]})
    >>> fold_metrics(s, lambda t: {"n": len(t)})
    {'n': 3, 'per_fold': {'0': {'n': 2}, '1': {'n': 1}}}
    """
    return {**metrics(samples), "per_fold": {str(f): metrics(g) for f, g in samples.groupby("fold")}}


def _pretrained(current: Run, fold_numbers: list[int]) -> str | list[str]:
    """What the folds' networks started from (the folds' ``pretrained`` artifact), once if all agree."""
    found = set()
    for fold in fold_numbers:
        with np.load(current.path / "artifacts" / f"fold{fold}.npz") as data:
            found.add(str(data["pretrained"]))
    names = sorted(found)
    return names[0] if len(names) == 1 else names


def cell_folds(cfg, memo: dict | None = None) -> tuple[pd.DataFrame, Any]:
    """A cell's samples table and its dataset's folds manifest (made on first use).

    ``memo``: a dict kept by the caller across cells; cells of the same dataset, number of
    folds and folds seed then read the dataset once (reading MagneticTile's masks takes
    seconds).
    """
    key = (cfg.dataset, cfg.n_folds, cfg.folds_seed)
    if memo is not None and key in memo:
        return memo[key]
    table = load_samples(cfg.dataset)
    found = table, ensure_folds(cfg.dataset, table, n_folds=cfg.n_folds, seed=cfg.folds_seed)
    if memo is not None:
        memo[key] = found
    return found


def _cell_run(cfg, memo: dict | None = None) -> tuple[pd.DataFrame, Any, Run]:
    """A cell's samples table, folds manifest (made on first use) and run folder."""
    table, manifest = cell_folds(cfg, memo)
    return table, manifest, Run(cfg, {cfg.dataset: manifest})


def cached_result(cfg, *, memo: dict | None = None) -> RunResult | None:
    """The finished run of a cross-validated cell if it is in the results cache, else None
    (nothing is trained). ``memo``: as :func:`cell_folds`."""
    current = _cell_run(cfg, memo)[2]
    return current.load() if current.complete else None


def cross_validate(
    cfg,
    train_fold: TrainFold,
    metrics: Callable[[pd.DataFrame], dict],
    *,
    desc: str,
    progress: bool = True,
    record_pretrained: bool = False,
) -> RunResult:
    """Train and test one cell over all folds, resumably (or read it from the results cache).

    The folds are those of the dataset's folds manifest (made on first use). A fold whose
    part is saved is not trained again, so an interrupted cell continues where it stopped;
    a finished cell is read back without training.

    Parameters
    ----------
    cfg : ExperimentConfig
        The cell's config, with fields ``dataset``, ``n_folds`` and ``folds_seed``.
    train_fold : callable
        ``train_fold(cfg, table, folds, fold, current, progress=progress)`` trains on the
        other folds, tests on ``fold`` and returns the test samples' table (it may save
        artifacts through ``current``).
    metrics : callable
        ``metrics(samples) -> dict`` of all folds' samples together: the run's metrics.
    desc : str
        Label of the progress bar over the folds.
    progress : bool, optional
        Show progress bars.
    record_pretrained : bool, optional
        Record in the provenance, under ``pretrained``, the weights the networks started
        from (every fold's ``pretrained`` artifact; one value when all folds agree).

    Returns
    -------
    RunResult
        The finished run; its provenance also holds ``device_used`` and ``heap``
        (:func:`defectlib.allocator.heap_policy` while it trained).
    """
    table, manifest, current = _cell_run(cfg)
    if current.complete:
        return current.load()
    retain_freed_memory()  # a speed lever only: the arithmetic is the same (defectlib.allocator)
    folds = manifest.folds_of(table)
    fold_numbers = cfg.fold_numbers() if hasattr(cfg, "fold_numbers") else list(range(cfg.n_folds))
    for fold in tqdm(fold_numbers, desc=desc, disable=not progress):
        if not current.has_part(f"fold{fold}"):
            current.save_part(f"fold{fold}", train_fold(cfg, table, folds, fold, current, progress=progress))
    samples = current.load_parts()
    extra = {"device_used": device(), "heap": heap_policy()}
    if record_pretrained:
        extra["pretrained"] = _pretrained(current, fold_numbers)
    return current.finish(samples, metrics(samples), extra=extra)
