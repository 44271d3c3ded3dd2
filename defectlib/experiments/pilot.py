"""Recipe pilots: one fold trained under a candidate config and scored on its validation images.

The ``converged`` profile's recipes (schedule, steps, learning rates, batches, input sizes)
are chosen on the validation images carved from each fold's training folds
(:func:`~defectlib.experiments.common.fold_split`), never on a test fold. A pilot is that
choice made repeatable: :func:`pilot_fold` trains test fold ``fold``'s training images
exactly as the grid would (the same split, seeding and training function, so a pilot of a
grid cell's own config reproduces that fold's validation curve) and then, where the grid
scores the test images, scores the validation images again. The test images are not read.

Pilots live in the cache (``<cache>/pilots/<experiment>/<run key>/``, with their checkpoints
and lock) and resume from their checkpoints like grid folds. A pilot a chapter draws, such as
a longer schedule tried against a cell's curves, is *published* (:func:`publish`): its
validation scores, curves and provenance, not its checkpoints, go to
``<results>/pilots/<experiment>/<run key>/`` (:func:`published_root`), apart from the cells'
results, and :func:`published_pilots` reads them back. From the command line: ``defectlib grid
pilot --experiment seg004 --fold 0 --set dataset=magnetictile model=improved
pairs_per_batch=4`` (add ``--publish`` to keep it with the results).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..locks import FileLock
from ..paths import cache_root, results_root
from ..results import PROVENANCE, Run, RunResult, read_result
from ..seeding import seed_everything
from .common import FoldData, cell_folds, fold_data
from .grid import EXPERIMENTS

__all__ = ["LongerSchedule", "Pilot", "compare_longer", "longer_schedules", "pilot_fold", "pilot_root", "publish",
           "published_pilots", "published_root", "read_curves"]


def pilot_root() -> Path:
    """Where pilots are kept: ``<cache>/pilots``."""
    return cache_root() / "pilots"


def published_root() -> Path:
    """Where published pilots are kept, beside the book's results: ``<results>/pilots``."""
    return results_root() / "pilots"


@dataclass
class Pilot:
    """A finished pilot: its run folder, its validation curves (:func:`read_curves`), the
    validation images' scores, their metrics (the experiment's cell metrics, over this fold)
    and the fold's checks (``constant_output`` and the like)."""

    run: Run
    fold: int
    curves: pd.DataFrame
    samples: pd.DataFrame
    metrics: dict
    checks: dict


def read_curves(artifact: str | Path) -> pd.DataFrame:
    """The validation curves a fold's artifact holds, one row per validation pass.

    Columns: ``stage`` (the history's prefix: ``train`` for one stage, ``seg`` and ``clf`` for
    seed 000's two), ``step``, ``loss`` (the mean training loss since the previous pass) and
    one column per validation metric the training recorded.
    """
    rows = []
    with np.load(artifact) as data:
        stages = [name.removesuffix("_eval_step") for name in data.files if name.endswith("_eval_step")]
        for stage in stages:
            steps = data[f"{stage}_eval_step"]
            losses = data[f"{stage}_losses"] if f"{stage}_losses" in data.files else np.array([])
            metrics = {name.removeprefix(f"{stage}_eval_"): data[name] for name in data.files
                       if name.startswith(f"{stage}_eval_") and name != f"{stage}_eval_step"}
            start = 0
            for i, step in enumerate(steps):
                end = min(int(step), len(losses))
                loss = float(np.mean(losses[start:end])) if end > start else float("nan")
                rows.append({"stage": stage, "step": int(step), "loss": loss,
                             **{name: float(values[i]) for name, values in sorted(metrics.items())}})
                start = end
    return pd.DataFrame(rows)


def pilot_fold(cfg, fold: int, *, progress: bool = True, root: str | Path | None = None) -> Pilot:
    """Train test fold ``fold`` of ``cfg``'s cell on its training images and score its
    validation images (a finished pilot of the same config is read back, an interrupted one
    resumes from its checkpoint). ``root``: where pilots are kept (:func:`pilot_root`).

    Examples
    --------
    >>> import tempfile
    >>> from defectlib.experiments.common import fold_data
    >>> from defectlib.experiments.rec004 import Rec004Config
    >>> cfg = Rec004Config.from_profile("smoke", steps=2, eval_every=1)
    >>> pilot = pilot_fold(cfg, 0, progress=False, root=tempfile.mkdtemp())
    >>> pilot.curves[["stage", "step"]].values.tolist()
    [['train', 1], ['train', 2]]
    >>> sorted(pilot.samples["sample_id"]) == sorted(fold_data(cfg, 0).val["sample_id"])
    True
    """
    memo: dict = {}
    _, manifest = cell_folds(cfg, memo)
    current = Run(cfg, {cfg.dataset: manifest}, root=root or pilot_root())
    name = f"fold{fold}"
    checkpoints = current.path / "checkpoints" / name
    if not current.has_part(name):
        with FileLock(current.path / f"{name}.lock",
                      waiting=f"waiting for another process that runs this pilot ({current.path})"):
            if not current.has_part(name):
                seed_everything(cfg.seed)
                data = fold_data(cfg, fold, memo)
                held_out = FoldData(fold=data.fold, train=data.train, val=data.val, test=data.val)
                outcome = EXPERIMENTS[cfg.EXPERIMENT].train_fold()(cfg, held_out, current, checkpoints=checkpoints,
                                                                   progress=progress)
                current.save_part(name, outcome.part, seconds=outcome.seconds, checks=outcome.checks)
                shutil.rmtree(checkpoints, ignore_errors=True)
    samples = current.load_part(name)
    metrics = EXPERIMENTS[cfg.EXPERIMENT].metrics(cfg)(samples)
    metrics.pop("per_fold", None)
    return Pilot(run=current, fold=fold, curves=read_curves(current.path / "artifacts" / f"{name}.npz"),
                 samples=samples, metrics=metrics, checks=current.part_checks()[name])


def publish(pilot: Pilot, *, root: str | Path | None = None) -> RunResult:
    """Keep a finished pilot with the book's results: its validation images' scores, its
    curves (the fold's artifact) and a provenance record (the config, the code that trained it,
    ``"pilot": {"fold": ...}``), under ``<root>/<experiment>/<run key>/`` (``root``:
    :func:`published_root`). Its checkpoints stay behind. Publishing again replaces it.
    """
    cfg = pilot.run.config
    _, manifest = cell_folds(cfg, {})
    target = Run(cfg, {cfg.dataset: manifest}, root=root or published_root())
    shutil.rmtree(target.path, ignore_errors=True)
    name = f"fold{pilot.fold}"
    for sub, suffixes in (("parts", (".csv", ".json")), ("artifacts", (".npz",))):
        (target.path / sub).mkdir(parents=True, exist_ok=True)
        for suffix in suffixes:
            shutil.copy2(pilot.run.path / sub / f"{name}{suffix}", target.path / sub / f"{name}{suffix}")
    return target.finish(pilot.samples, {**pilot.metrics, "fold_checks": {str(pilot.fold): pilot.checks}},
                         extra={"pilot": {"fold": pilot.fold, "scored": "validation images"}})


def published_pilots(experiment: str, *, root: str | Path | None = None) -> list[RunResult]:
    """Every published pilot of ``experiment`` (:func:`publish`), oldest first; a pilot's
    ``provenance["pilot"]["fold"]`` names the test fold whose training folds it used, and its
    ``samples`` are that fold's validation images."""
    folder = Path(root or published_root()) / experiment
    found = [read_result(provenance.parent) for provenance in folder.glob(f"*/{PROVENANCE}")]
    return sorted(found, key=lambda r: r.provenance["finished_utc"])


def longer_schedules(results: list[RunResult], pilots: list[RunResult]) -> list[tuple[RunResult, RunResult]]:
    """Pairs ``(cell, pilot)`` of finished cells and published pilots whose configs differ in
    the number of ``steps`` only: the same recipe run for longer (or shorter) on one fold.

    Examples
    --------
    >>> from types import SimpleNamespace as R
    >>> cell = R(provenance={"config": {"lr": 3e-4, "steps": 10}})
    >>> longer = R(provenance={"config": {"lr": 3e-4, "steps": 20}})
    >>> other = R(provenance={"config": {"lr": 1e-3, "steps": 20}})
    >>> [(a.provenance["config"]["steps"], b.provenance["config"]["steps"])
    ...  for a, b in longer_schedules([cell], [longer, other])]
    [(10, 20)]
    """
    def recipe(result) -> dict:
        return {k: v for k, v in result.provenance["config"].items() if k != "steps"}

    return [(cell, pilot) for pilot in pilots for cell in results
            if recipe(cell) == recipe(pilot) and cell.provenance["config"]["steps"] != pilot.provenance["config"]["steps"]]


@dataclass(frozen=True)
class LongerSchedule:
    """One fold of a cell beside a published pilot of the same recipe run for a different
    number of steps: both validation curves (``{"train_eval_step": ..., "train_eval_<metric>":
    ...}``, as the experiments' ``training_curves`` give a fold) and the verdict the chapters
    print. ``config`` is the cell's config, where known (:func:`compare_longer` sets it).

    Examples
    --------
    >>> import numpy as np
    >>> cell = {"train_eval_step": np.array([50, 100]), "train_eval_ap": np.array([0.7, 0.8])}
    >>> pilot = {"train_eval_step": np.array([100, 200]), "train_eval_ap": np.array([0.8, 0.79])}
    >>> item = LongerSchedule("DR", 0, 100, 200, cell, pilot)
    >>> item.final("ap"), item.does_better(["ap"])
    ((0.8, 0.79), False)
    >>> print(item.verdict({"ap": "AP"}))  # doctest: +NORMALIZE_WHITESPACE
    - DR, fold 0: validation AP 0.790 after 200 steps, against 0.800 after the cell's 100: the longer
    schedule ends no higher, so more steps of this recipe do not help and the cell keeps its steps.
    """

    name: str
    fold: int
    cell_steps: int
    pilot_steps: int
    cell_curve: dict[str, np.ndarray]
    pilot_curve: dict[str, np.ndarray]
    #: The cell's config (for its validation split), where known.
    config: object = None

    @property
    def labels(self) -> tuple[str, str]:
        """Names of the cell's curve and the pilot's: ``"<cell>, fold <k>: <steps> steps (the cell)"``."""
        head = f"{self.name}, fold {self.fold}"
        return f"{head}: {self.cell_steps:,} steps (the cell)", f"{head}: {self.pilot_steps:,} steps (pilot)"

    def final(self, metric: str) -> tuple[float, float]:
        """The validation ``metric`` at the last evaluation: ``(cell, pilot)``."""
        return tuple(float(curve[f"train_eval_{metric}"][-1]) for curve in (self.cell_curve, self.pilot_curve))

    def does_better(self, metrics) -> bool:
        """Whether the pilot ends higher than the cell on any of ``metrics``."""
        return any(pilot > cell for cell, pilot in map(self.final, metrics))

    def verdict(self, metrics: dict[str, str]) -> str:
        """A Markdown list item: the final validation ``metrics`` (``{metric: label}``) of pilot
        and cell, and whether the cell needs more steps."""
        ends = {metric: self.final(metric) for metric in metrics}
        pilot = " and ".join(f"{label} {ends[m][1]:.3f}" for m, label in metrics.items())
        cell = " and ".join(f"{ends[m][0]:.3f}" for m in metrics)
        outcome = ("the longer schedule does better, so this cell needs more steps." if self.does_better(metrics) else
                   "the longer schedule ends no higher, so more steps of this recipe do not help and the cell keeps "
                   "its steps.")
        return (f"- {self.name}, fold {self.fold}: validation {pilot} after {self.pilot_steps:,} steps, against "
                f"{cell} after the cell's {self.cell_steps:,}: {outcome}")


def compare_longer(results: list[RunResult], pilots: list[RunResult], *, curves, name) -> list[LongerSchedule]:
    """Every :func:`longer_schedules` pair as a :class:`LongerSchedule`, on the pilot's fold.

    ``curves(result) -> {fold: arrays}`` is the experiment's ``training_curves``;
    ``name(result) -> str`` names the cell.
    """
    out = []
    for cell, pilot in longer_schedules(results, pilots):
        fold = int(pilot.provenance["pilot"]["fold"])
        out.append(LongerSchedule(name(cell), fold, int(cell.provenance["config"]["steps"]),
                                  int(pilot.provenance["config"]["steps"]), curves(cell)[fold], curves(pilot)[fold],
                                  cell.config))
    return out
