"""Pieces the experiments share: the device, choice-checked config fields, the fold loop.

:func:`one_of` and :func:`all_of` build field types that accept only names from a set (a
model, a dataset; a list of them), so a config rejects a misspelt name at once, with the
choices in the message. :func:`fold_split` carves a fold's validation groups out of its
training folds. :func:`cross_validate` is the resumable k-fold loop of a grid cell: every fold
not yet saved is trained (under a lock, so two processes never train the same fold, and from
its last checkpoint when one exists), then the cell is finished (or a finished one read back).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import AfterValidator, Field
from scipy import stats
from sklearn.model_selection import StratifiedGroupKFold
from tqdm.auto import tqdm

from ..config import ExperimentConfig
from ..data import load_samples
from ..data.folds import ensure_folds
from ..locks import FileLock
from ..metrics import ap_standard_error
from ..paths import cache_root
from ..results import Run, RunResult
from ..seeding import seed_everything

#: A fold whose scores on the validation or test images have a standard deviation under this
#: is flagged ``constant_output`` and counted as failed.
CONSTANT_STD = 0.05
#: Defect-area bins of the size tables, in pixels: [1, 100), [100, 300), ..., [10000, ∞).
AREA_BINS = (1, 100, 300, 1000, 3000, 10000, math.inf)


class CrossValidatedConfig(ExperimentConfig):
    """A grid cell tested by k-fold cross-validation (:func:`cross_validate`).

    Subclasses define ``dataset``, ``n_folds`` and ``folds_seed``. Every fold holds out
    ``val_fraction`` of its training groups as validation images (:func:`fold_split`): the
    networks never train on them; they are scored every ``eval_every`` steps, which is how the
    recipes were chosen and how a reader sees that training reached its plateau.
    """

    #: Share of each fold's training groups held out for validation (stratified by class).
    val_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    #: Steps between validation passes (0: only after the last step).
    eval_every: int = Field(default=250, ge=0)


@dataclass
class FoldData:
    """The sample tables of one fold: training, validation (carved from training) and test."""

    fold: int
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


@dataclass
class FoldOutcome:
    """What an experiment's ``train_fold`` returns: the test samples' table, the seconds of
    computation it took (over every process that worked on the fold, resumes included) and
    per-fold checks (for instance ``constant_output``)."""

    part: pd.DataFrame
    seconds: float
    checks: dict[str, Any] = field(default_factory=dict)


#: ``train_fold(cfg, data, current, *, checkpoints, progress) -> FoldOutcome``.
TrainFold = Callable[..., FoldOutcome]


def fold_split(table: pd.DataFrame, folds: np.ndarray, fold: int, *, val_fraction: float,
               seed: int = 0) -> FoldData:
    """Training, validation and test tables of test fold ``fold``.

    The validation groups are one split of :class:`~sklearn.model_selection.StratifiedGroupKFold`
    with ``round(1 / val_fraction)`` splits over the training rows (grouped by ``group``,
    stratified by ``defect_class``, shuffled with ``seed + fold``): a pure function of the
    folds manifest, so every run of a fold holds out the same images and no part is in two sets.

    Examples
    --------
    >>> t = pd.DataFrame({"group": [f"g{i // 2}" for i in range(40)],
    ...                   "defect_class": ["bad" if i % 4 == 0 else "good" for i in range(40)]})
    >>> folds = np.arange(40) // 2 % 4
    >>> d = fold_split(t, folds, 0, val_fraction=0.25)
    >>> len(d.train), len(d.val), len(d.test)
    (22, 8, 10)
    >>> set(d.val["group"]) & set(d.train["group"])
    set()
    """
    train_all, test = table[folds != fold], table[folds == fold]
    n_splits = max(2, int(round(1 / val_fraction)))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + fold)
    _, val_idx = next(splitter.split(np.zeros(len(train_all)), train_all["defect_class"],
                                     groups=train_all["group"]))
    val_mask = np.zeros(len(train_all), bool)
    val_mask[val_idx] = True
    return FoldData(fold=fold, train=train_all[~val_mask], val=train_all[val_mask], test=test)


def constant_output(scores, *, limit: float = CONSTANT_STD) -> bool:
    """Whether ``scores`` are (nearly) constant: standard deviation under ``limit``.

    Examples
    --------
    >>> constant_output([0.503, 0.502, 0.504]), constant_output([0.1, 0.9])
    (True, False)
    """
    values = np.asarray(scores, dtype=float)
    values = values[np.isfinite(values)]
    return bool(len(values) < 2 or values.std() < limit)


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


def cell_run(cfg, memo: dict | None = None) -> Run:
    """The run folder of a cell (its folds manifest made on first use)."""
    _, manifest = cell_folds(cfg, memo)
    return Run(cfg, {cfg.dataset: manifest})


def cached_result(cfg, *, memo: dict | None = None) -> RunResult | None:
    """The finished run of a cross-validated cell if it is in the results cache, else None
    (nothing is trained). ``memo``: as :func:`cell_folds`."""
    current = cell_run(cfg, memo)
    return current.load() if current.complete else None


def run_cells(configs: list, run: Callable[..., RunResult], *, compute: bool = True,
              progress: bool = True) -> list[RunResult]:
    """The finished runs of ``configs``: read from the results cache, and with ``compute`` each
    missing one trained by ``run(cfg, progress=...)`` (unfinished ones continue). Without
    ``compute`` missing cells are left out (:func:`pending` lists them)."""
    if not compute:
        memo: dict = {}  # one read of each dataset for all the cells
        return [r for r in (cached_result(cfg, memo=memo) for cfg in configs) if r is not None]
    return [run(cfg, progress=progress) for cfg in tqdm(configs, desc="grid", disable=not progress)]


def fold_data(cfg, fold: int, memo: dict | None = None) -> FoldData:
    """The training, validation and test tables of test fold ``fold`` of a cell, as the grid
    trains it (:func:`fold_split` of the cell's folds manifest). ``memo``: as :func:`cell_folds`."""
    table, manifest = cell_folds(cfg, memo)
    table = table.assign(group=manifest.groups_of(table))  # parts that share an image stay together
    return fold_split(table, manifest.folds_of(table), fold, val_fraction=cfg.val_fraction, seed=cfg.folds_seed)


def checkpoint_dir(current: Run, fold: int) -> Path:
    """Where a fold's checkpoints live: ``<cache>/checkpoints/<experiment>/<run key>/fold<k>``."""
    return cache_root() / "checkpoints" / current.config.EXPERIMENT / current.key / f"fold{fold}"


def checkpoint_hours(current: Run, fold: int) -> float:
    """Training hours a fold's checkpoints already hold: the sum of their ``seconds`` (every
    stage's checkpoint counts, so a two-stage fold adds both), 0 without checkpoints. An
    unreadable checkpoint counts as 0 (training starts that stage again)."""
    import torch

    total = 0.0
    for path in sorted(checkpoint_dir(current, fold).glob("*.pt")):
        try:
            state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
            total += float(state.get("seconds", 0.0))
        except Exception:  # noqa: BLE001  (a torn or foreign file holds no usable progress)
            continue
    return total / 3600


def lock_path(current: Run, name: str) -> Path:
    """The lock file of a piece of a run (``fold3``, ``finish``), under the cache."""
    return cache_root() / "locks" / current.config.EXPERIMENT / f"{current.key}-{name}.lock"


def train_one_fold(cfg, train_fold: TrainFold, fold: int, *, wait: bool = True, progress: bool = True,
                   memo: dict | None = None) -> str:
    """Train and save test fold ``fold`` of a cell unless it is saved or being trained.

    Returns what happened: ``"saved"`` (it was already), ``"busy"`` (another process holds
    its lock and ``wait`` is False) or ``"trained"``. With ``wait`` a process that finds the
    fold locked waits for the other one to finish it.
    """
    memo = {} if memo is None else memo
    current = cell_run(cfg, memo)
    name = f"fold{fold}"
    if current.complete or current.has_part(name):
        return "saved"
    with FileLock(lock_path(current, name), wait=wait,
                  waiting=f"waiting for another process that is training {cfg.EXPERIMENT} {current.key} {name}") as held:
        if not held:
            return "busy"
        if current.complete or current.has_part(name):
            return "saved"
        seed_everything(cfg.seed)
        data = fold_data(cfg, fold, memo)
        outcome = train_fold(cfg, data, current, checkpoints=checkpoint_dir(current, fold), progress=progress)
        current.save_part(name, outcome.part, seconds=outcome.seconds, checks=outcome.checks)
        shutil.rmtree(checkpoint_dir(current, fold), ignore_errors=True)
    return "trained"


def _saved_metrics(current: Run, samples: pd.DataFrame, metrics: Callable[[pd.DataFrame], dict]) -> dict:
    """``metrics`` of the saved folds' ``samples``, with every fold's checks and the failed folds."""
    checks = current.part_checks()
    result = {**metrics(samples)}
    result["fold_checks"] = {name.removeprefix("fold"): c for name, c in sorted(checks.items())}
    result["failed_folds"] = sorted(int(name.removeprefix("fold")) for name, c in checks.items()
                                    if c.get("constant_output"))
    return result


def partial_results(configs: list, results: list[RunResult], metrics: Callable, *,
                    memo: dict | None = None) -> list[RunResult]:
    """The cells of ``configs`` that are not among the finished ``results`` but have folds
    saved, each read back from its saved folds only (nothing is trained).

    A page can show how a cell still being computed is going, fold by fold, beside the
    finished cells' same folds; its figures are those of the folds saved so far, not the cell's.

    Parameters
    ----------
    configs : list
        Cross-validated cell configs.
    results : list of RunResult
        The finished cells (by run key, these are left out).
    metrics : callable
        ``metrics(cfg, samples) -> dict`` (an experiment's ``cell_metrics``).

    Returns
    -------
    list of RunResult
        ``samples`` of the saved folds, their ``metrics`` (with ``fold_checks`` and
        ``failed_folds`` as a finished cell's), and a provenance with the ``config``, the saved
        folds' ``wall_time_s`` and ``folds_saved`` (their numbers, of ``n_folds`` in the config).
    """
    memo = {} if memo is None else memo
    done, out = {r.key for r in results}, {}
    for cfg in configs:
        current = cell_run(cfg, memo)
        info = current.part_info()
        if current.key in done or current.key in out or current.complete or not info:
            continue
        samples = current.load_parts()
        provenance = {"config": cfg.to_dict(), "wall_time_s": round(sum(i["wall_time_s"] for i in info.values()), 3),
                      "folds_saved": sorted(int(name.removeprefix("fold")) for name in info)}
        out[current.key] = RunResult(key=current.key, path=current.path, samples=samples,
                                     metrics=_saved_metrics(current, samples, partial(metrics, cfg)),
                                     provenance=provenance)
    return list(out.values())


def on_folds(result: RunResult, folds: Collection[int], metrics: Callable) -> RunResult:
    """A finished cell read on some of its test folds only, to set beside a cell of which only
    those folds are saved (:func:`partial_results`).

    ``samples`` are those folds' rows, ``metrics(cfg, samples)`` is recomputed from them (with
    their ``fold_checks`` and ``failed_folds``), and the provenance gains ``folds_saved`` and the
    wall time of those folds only.
    """
    folds = sorted(int(f) for f in folds)
    samples = result.samples[result.samples["fold"].isin(folds)].reset_index(drop=True)
    metrics_ = {**metrics(result.config, samples)}
    checks = result.metrics.get("fold_checks", {})
    metrics_["fold_checks"] = {k: v for k, v in checks.items() if int(k) in folds}
    metrics_["failed_folds"] = [f for f in result.metrics.get("failed_folds", []) if f in folds]
    parts = result.provenance.get("parts", {})
    seconds = sum(parts.get(f"fold{f}", {}).get("wall_time_s") or 0.0 for f in folds)
    return RunResult(key=result.key, path=result.path, samples=samples, metrics=metrics_,
                     provenance={**result.provenance, "wall_time_s": round(seconds, 3), "folds_saved": folds})


def same_folds(partial: list[RunResult], finished: list[RunResult], metrics: Callable) -> list[RunResult]:
    """The ``finished`` cells of each dataset that has cells in ``partial``, read (:func:`on_folds`)
    on the folds saved of that dataset's partial cells (all of them together)."""
    folds: dict[str, set[int]] = {}
    for r in partial:
        folds.setdefault(r.config.dataset, set()).update(r.provenance["folds_saved"])
    return [on_folds(r, folds[r.config.dataset], metrics) for r in finished if r.config.dataset in folds]


def finish_cell(cfg, metrics: Callable[[pd.DataFrame], dict], *, record_pretrained: bool = False,
                memo: dict | None = None) -> RunResult | None:
    """Finish a cell whose folds are all saved (once, under a lock); None while folds are missing."""
    current = cell_run(cfg, memo)
    if current.complete:
        return current.load()
    folds = list(range(cfg.n_folds))
    if not all(current.has_part(f"fold{f}") for f in folds):
        return None
    with FileLock(lock_path(current, "finish"), wait=True):
        if current.complete:
            return current.load()
        samples = current.load_parts()
        result = _saved_metrics(current, samples, metrics)
        used = sorted({"cuda" if info.get("device", {}).get("cuda") else "cpu" for info in current.part_info().values()})
        extra = {"device_used": used[0] if len(used) == 1 else used}  # where the folds trained
        if record_pretrained:
            extra["pretrained"] = _pretrained(current, folds)
        return current.finish(samples, result, extra=extra)


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
    part is saved is not trained again, and a fold stopped part-way resumes from its last
    checkpoint, so an interrupted cell continues where it stopped; a fold another process is
    training is waited for; a finished cell is read back without training.

    Parameters
    ----------
    cfg : CrossValidatedConfig
        The cell's config, with fields ``dataset``, ``n_folds`` and ``folds_seed``.
    train_fold : callable
        ``train_fold(cfg, data, current, checkpoints=..., progress=...) -> FoldOutcome``:
        trains on ``data.train`` (validating on ``data.val``), tests on ``data.test``.
    metrics : callable
        ``metrics(samples) -> dict`` of all folds' samples together: the run's metrics (to
        which ``fold_checks`` and ``failed_folds`` are added).
    desc : str
        Label of the progress bar over the folds.
    record_pretrained : bool, optional
        Record in the provenance, under ``pretrained``, the weights the networks started
        from (every fold's ``pretrained`` artifact; one value when all folds agree).
    """
    memo: dict = {}
    current = cell_run(cfg, memo)
    if current.complete:
        return current.load()
    for fold in tqdm(range(cfg.n_folds), desc=desc, disable=not progress):
        train_one_fold(cfg, train_fold, fold, wait=True, progress=progress, memo=memo)
    return finish_cell(cfg, metrics, record_pretrained=record_pretrained, memo=memo)


def curve_change(steps, values, *, last: float = 1 / 3) -> float:
    """How much a validation curve moved over the last ``last`` of training: its final value
    minus its value at the first record at or after ``(1 - last)`` of the final step.

    A recipe has reached its plateau when this is small against the spread between folds; a
    clearly positive value means the run needed more steps.

    Examples
    --------
    >>> round(curve_change([100, 200, 300, 400, 500, 600], [0.5, 0.8, 0.9, 0.92, 0.93, 0.93]), 3)
    0.01
    >>> curve_change([], [])
    nan
    """
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    if len(steps) == 0:
        return float("nan")
    start = np.flatnonzero(steps >= (1 - last) * steps[-1] - 1e-9)[0]
    return float(values[-1] - values[start])


def curve_trend(steps, values, *, last: float = 1 / 3) -> tuple[float, float]:
    """The least-squares line through a validation curve's last ``last`` of training: how much
    it rises over that span, and the standard error of that rise (from the scatter of the
    evaluations about the line).

    Where each evaluation is noisy (a pixel F1 on a few validation images), the line's rise is
    a steadier measure of a trend than :func:`curve_change`'s two end points; a rise of more
    than twice its standard error is a trend the scatter cannot explain. Fewer than three
    evaluations in the span give nan for both.

    Examples
    --------
    >>> rise, se = curve_trend([0, 1, 2, 3, 4, 5, 6, 7, 8], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    >>> round(rise, 3), round(se, 3)
    (0.2, 0.0)
    >>> curve_trend([1, 2], [0.5, 0.6])
    (nan, nan)
    """
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    if len(steps) == 0:
        return float("nan"), float("nan")
    keep = steps >= (1 - last) * steps[-1] - 1e-9
    x, y = steps[keep], values[keep]
    if len(x) < 3 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    fit = stats.linregress(x, y)
    span = float(x[-1] - x[0])
    return float(fit.slope * span), float(fit.stderr * span)


def plateau_table(curves: dict[str, dict[int, dict[str, np.ndarray]]], *, prefix: str,
                  metric: str = "ap", positives: dict[str, dict[int, int]] | None = None) -> pd.DataFrame:
    """Per cell and fold: the validation ``metric`` at the end of training, its best value, and
    its change over the last third of training (:func:`curve_change`), with ``rising`` 1.0
    where that part of the curve still climbs beyond its noise (0.0 where not; nan where
    unknown).

    ``curves``: ``{cell name: {fold: arrays}}`` as the experiments' ``training_curves`` give.
    For ``metric="ap"`` the noise is how precisely the fold's validation images measure its
    final AP: ``positives`` (``{cell name: {fold: defective validation images}}``,
    :func:`validation_positives`) gives ``standard_error``
    (:func:`~defectlib.metrics.ap_standard_error`) and ``rising`` compares the change with it.
    For any other metric (a pixel F1, whose noise has no closed form) ``rising`` is the trend
    test of :func:`curve_trend`: the fitted line over the last third rises by more than twice
    its standard error, which is ``standard_error``; ``trend`` is that line's rise. A fold
    that ended at the metric's ceiling (1.0) is never rising: no more steps can raise it.
    """
    rows = []
    for cell, folds in curves.items():
        for fold, arrays in sorted(folds.items()):
            steps, values = arrays.get(f"{prefix}_eval_step", []), arrays.get(f"{prefix}_eval_{metric}", [])
            final = float(values[-1]) if len(values) else np.nan
            change = curve_change(steps, values)
            n_positive = (positives or {}).get(cell, {}).get(fold)
            if metric == "ap":
                trend = np.nan
                se = ap_standard_error(ap=final, n_positive=n_positive) if n_positive is not None else np.nan
                rising = np.nan if np.isnan(se) or np.isnan(change) else float(change > se)
            else:
                trend, se = curve_trend(steps, values)
                rising = np.nan if np.isnan(se) else float(trend > 2 * se)
            if final >= 1:
                rising = 0.0
            rows.append({"cell": cell, "fold": fold, "final": final,
                         "best": float(np.nanmax(values)) if len(values) else np.nan,
                         "change_last_third": change, "trend": trend,
                         "n_positive": np.nan if n_positive is None else n_positive, "standard_error": se,
                         "rising": rising})
    return pd.DataFrame(rows, columns=["cell", "fold", "final", "best", "change_last_third", "trend",
                                       "n_positive", "standard_error", "rising"])


def validation_positives(cfg, memo: dict | None = None) -> dict[int, int]:
    """Per fold of a cross-validated cell, how many defective images its validation images hold
    (:func:`fold_split`, from the folds manifest: the same images the run validated on).

    ``memo``: as :func:`cell_folds`.
    """
    table, manifest = cell_folds(cfg, memo)
    folds = manifest.folds_of(table)
    return {fold: int(fold_split(table, folds, fold, val_fraction=cfg.val_fraction, seed=cfg.folds_seed)
                      .val["label"].sum())
            for fold in range(cfg.n_folds)}


def failed_folds(results: list[RunResult], name: Callable[[RunResult], str]) -> pd.DataFrame:
    """Every fold flagged ``constant_output`` in ``results``, with its scores' spread."""
    rows = []
    for r in results:
        for fold, checks in r.metrics.get("fold_checks", {}).items():
            if checks.get("constant_output"):
                rows.append({"cell": name(r), "fold": int(fold),
                             **{k: v for k, v in checks.items() if k != "constant_output"}})
    return pd.DataFrame(rows)


def restarted_folds(results: list[RunResult], name: Callable[[RunResult], str], *,
                    check: str = "restarts", prefix: str = "train") -> pd.DataFrame:
    """The folds whose network stalled and was trained again
    (:func:`~defectlib.training.loop.retrain_while_stalled`), read from the fold checks' ``check``
    count: cell (``name(result)``), fold, restarts, and the final validation AP and score
    spread of the attempt that was kept. Where the fold's artifact holds the curves (under
    ``prefix``), ``loss`` is the kept attempt's
    :func:`~defectlib.training.loop.last_tenth_loss`, and ``stalled_loss`` and
    ``stalled_val_ap`` give the same figure and the final validation AP of each stalled
    attempt, in order ("; "-joined)."""
    from ..training.loop import last_tenth_loss

    columns = ["cell", "fold", "restarts", "val_ap", "val_score_std", "loss", "stalled_loss", "stalled_val_ap"]
    rows = []
    for r in results:
        for fold, checks in sorted(r.metrics.get("fold_checks", {}).items(), key=lambda kv: int(kv[0])):
            if not checks.get(check):
                continue
            row = {"cell": name(r), "fold": int(fold), "restarts": int(checks[check]),
                   "val_ap": checks.get("val_ap"), "val_score_std": checks.get("val_score_std")}
            try:
                curves = r.artifact(f"fold{fold}")
            except (AttributeError, OSError):  # no stored curves: the checks alone
                curves = {}
            if f"{prefix}_losses" in curves:
                row["loss"] = last_tenth_loss(curves[f"{prefix}_losses"])
            stalled = [i for i in range(row["restarts"]) if f"{prefix}_stalled{i}_losses" in curves]
            if stalled:
                row["stalled_loss"] = "; ".join(
                    f"{last_tenth_loss(curves[f'{prefix}_stalled{i}_losses']):.3f}" for i in stalled)
                row["stalled_val_ap"] = "; ".join(
                    f"{float(curves[f'{prefix}_stalled{i}_eval_ap'][-1]):.3f}"
                    if len(curves.get(f"{prefix}_stalled{i}_eval_ap", [])) else "n/a" for i in stalled)
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def pending(configs: list, results: list[RunResult], name: Callable) -> list[str]:
    """The cells of ``configs`` not among the finished ``results`` (by run key), as names, each
    once (a chapter may list the same cell twice, as in a grid and as an ablation's reference);
    a cell with folds saved says how many, as in ``"<name> (2 of 5 folds saved)"``."""
    done, memo, labels = {r.key for r in results}, {}, {}
    for cfg in configs:
        current = cell_run(cfg, memo)
        if current.key in done or current.key in labels:
            continue
        saved = len(current.part_info())
        labels[current.key] = name(cfg) + (f" ({saved} of {cfg.n_folds} folds saved)" if saved else "")
    return list(labels.values())


def area_bins(bins=AREA_BINS) -> list[tuple[float, float, str]]:
    """The bins ``[bins[i], bins[i+1])`` of a defect-area table, each as (low, high, label).

    Raises ``ValueError`` unless ``bins`` are at least two increasing edges.

    Examples
    --------
    >>> area_bins((1, 100, math.inf))
    [(1.0, 100.0, '1–99'), (100.0, inf, '≥100')]
    """
    edges = [float(b) for b in bins]
    if len(edges) < 2 or any(a >= b for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bins must be at least two increasing edges, got {bins}")
    return [(low, high, f"≥{low:g}" if math.isinf(high) else f"{low:g}–{high - 1:g}")
            for low, high in zip(edges, edges[1:])]


def span(values, fmt: str = "{}") -> str:
    """The range of ``values`` as text, ``"low–high"``, or one value when both ends print alike.

    Examples
    --------
    >>> span([10, 11])
    '10–11'
    >>> span([100 / 79, 100 / 78], "{:.1f}")
    '1.3'
    """
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low}–{high}"


def timed(fn: Callable, *args, **kwargs) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and the seconds it took."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
