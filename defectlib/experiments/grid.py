"""The study's whole grid: every cell of a profile, in the order they are computed, as fold tasks.

:func:`study_cells` lists the cells the book shows for a profile (seed 000's sweep, spread and
resolution studies; seed 004's recognition and segmentation grids and ablation), most telling
first. :func:`run_worker` trains every fold of them that the results cache does not hold; any
number of workers may run at once (each takes a fold under a lock, so none is trained twice),
and a stopped worker's fold resumes from its checkpoint in the next. :func:`grid_status`
reports what is done, what is running and what is left, with the compute time so far and an
estimate of what remains.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from . import rec004, seg000, seg004
from .common import cell_run, finish_cell, lock_path, train_one_fold
from ..locks import is_locked


@dataclass(frozen=True)
class Experiment:
    """How the grid trains and finishes the cells of one experiment."""

    module: object
    record_pretrained: bool

    def train_fold(self) -> Callable:
        return self.module._train_fold

    def metrics(self, cfg) -> Callable[[pd.DataFrame], dict]:
        return partial(self.module.cell_metrics, cfg)


EXPERIMENTS = {
    "seg000": Experiment(seg000, record_pretrained=False),
    "rec004": Experiment(rec004, record_pretrained=True),
    "seg004": Experiment(seg004, record_pretrained=True),
}


def describe(cfg) -> str:
    """A short name of a cell, for progress and status tables.

    Examples
    --------
    >>> describe(seg000.Seg000Config.from_profile("smoke", model="unet", dilation=5))
    'seg000 unet k=5 64×32 seed 0'
    """
    if cfg.EXPERIMENT == "seg000":
        return f"seg000 {cfg.model} k={cfg.dilation} {'×'.join(map(str, cfg.input_size))} seed {cfg.seed}"
    if cfg.EXPERIMENT == "rec004":
        return (f"rec004 {cfg.dataset} {cfg.method} aug={'on' if cfg.augment else 'off'} "
                f"{'×'.join(map(str, cfg.input_size))} seed {cfg.seed}")
    return f"seg004 {cfg.dataset} {cfg.variant} seed {cfg.seed}"


def _family(cfg) -> tuple:
    """Cells whose folds cost about the same: same experiment, network, dataset, size and length."""
    d = cfg.to_dict()
    return tuple(str(d.get(k)) for k in ("experiment", "model", "method", "branch", "aspp", "local_input", "dataset",
                                         "input_size", "steps", "seg_steps", "clf_steps", "pairs_per_batch"))


def study_cells(profile: str) -> list:
    """Every cell the book shows under ``profile``, in the order the grid computes them.

    Cheap cells that answer a paper's main question come first (the proposed network's sweep at
    the main grid's size and at the resolution study's first size, recognition without and with
    augmentation and segmentation on KolektorSDD), the spread and ablation studies last. The
    baselines come at the spread study's dilations first, each at the main size and then, at
    the first of those dilations, at the baselines' larger size. The image classifier with
    augmentation (in the converged profile the costliest recognition cell: four times the pairs
    a step) comes on each dataset after the other recognition cells there: on KolektorSDD after
    those first baselines, on MagneticTile after DR with augmentation. Then come the proposed
    network's larger sizes at the spread study's dilations, the baselines' larger size at its
    other dilations and the recognition's resolution study; the proposed network's larger sizes
    at the other dilations come after the spread study.
    """
    s000 = seg000.Seg000GridConfig.from_profile(profile)
    r004 = rec004.Rec004GridConfig.from_profile(profile)
    s004 = seg004.Seg004GridConfig.from_profile(profile)
    main000 = s000.cells()
    proposed = [c for c in main000 if c.model == "proposed"]
    baselines = [c for c in main000 if c.model != "proposed"]
    first_dilations = [c for c in baselines if c.dilation in s000.seed_dilations]
    recognition = r004.cells()
    plain = [c for c in recognition if not c.augment]
    augmented = [c for c in recognition if c.augment and c.method != "resnet50"]
    classifier_augmented = [c for c in recognition if c.augment and c.method == "resnet50"]
    segmentation = s004.cells()
    resolution = s000.resolution_cells()
    first_size = [c for c in resolution if c.input_size == resolution[0].input_size] if resolution else []
    larger = [c for c in resolution if c not in first_size]
    larger_first = [c for c in larger if c.dilation in s000.seed_dilations]
    baselines_larger = s000.baseline_resolution_cells()
    baselines_larger_first = [c for c in baselines_larger if c.dilation == s000.seed_dilations[0]]
    by_dataset = lambda cells, first: sorted(cells, key=lambda c: c.dataset != first)  # noqa: E731
    order = [
        *proposed,
        *first_size,
        *by_dataset(plain, "kolektorsdd")[: len(plain) // 2 or len(plain)],
        *by_dataset(segmentation, "kolektorsdd")[: len(segmentation) // 2 or len(segmentation)],
        *by_dataset(augmented, "kolektorsdd")[: len(augmented) // 2 or len(augmented)],
        *first_dilations,
        *baselines_larger_first,
        *by_dataset(classifier_augmented, "kolektorsdd")[: len(classifier_augmented) // 2 or len(classifier_augmented)],
        *larger_first,
        *baselines_larger,
        *r004.resolution_cells(),
        *by_dataset(plain, "kolektorsdd")[len(plain) // 2 or len(plain):],
        *by_dataset(segmentation, "kolektorsdd")[len(segmentation) // 2 or len(segmentation):],
        *by_dataset(augmented, "kolektorsdd")[len(augmented) // 2 or len(augmented):],
        *by_dataset(classifier_augmented, "kolektorsdd")[len(classifier_augmented) // 2 or len(classifier_augmented):],
        *[c for c in baselines if c not in first_dilations],
        *s000.seed_cells(),
        *[c for c in larger if c not in larger_first],
        *s004.ablation_cells(),
    ]
    unique, seen = [], set()
    for cfg in order:
        key = (cfg.EXPERIMENT, cfg.digest())
        if key not in seen:
            seen.add(key)
            unique.append(cfg)
    return unique


def _commit(current, message: str) -> None:
    """Commit one run folder (and nothing else) to the git repository that holds it."""
    path = current.path
    found = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True)
    if found.returncode != 0:
        return  # results outside a git checkout are not committed
    root = found.stdout.strip()
    rel = path.resolve().relative_to(root)
    for _ in range(5):
        added = subprocess.run(["git", "add", "--", str(rel)], cwd=root, capture_output=True, text=True)
        done = subprocess.run(["git", "commit", "-q", "-m", message, "--", str(rel)], cwd=root,
                              capture_output=True, text=True) if added.returncode == 0 else added
        if done.returncode == 0 or "nothing to commit" in done.stdout + done.stderr:
            return
        if "index.lock" not in done.stderr:
            print(f"git commit of {rel} failed: {done.stderr.strip()}", file=sys.stderr)
            return
        import time

        time.sleep(2)


def run_worker(cells: Iterable, *, commit: bool = False, progress: bool = True, log=print) -> dict[str, int]:
    """Train every fold of ``cells`` that no process has saved or is training; finish the cells.

    A fold another process holds is skipped (that process finishes it and its cell). With
    ``commit`` every saved fold and finished cell is committed to git (the run folder only).
    A fold that raises is reported (cell, fold, error) and the worker goes on; its checkpoint
    stays, and the next worker tries it again. Returns counts: ``trained`` folds, ``busy``
    folds (skipped), ``failed`` folds, ``finished`` cells.
    """
    counts = {"trained": 0, "busy": 0, "failed": 0, "finished": 0}
    memo: dict = {}
    for cfg in cells:
        experiment = EXPERIMENTS[cfg.EXPERIMENT]
        name = describe(cfg)
        current = cell_run(cfg, memo)
        if current.complete:
            continue
        for fold in range(cfg.n_folds):
            log(f"{name}: fold {fold} ...")
            try:
                what = train_one_fold(cfg, experiment.train_fold(), fold, wait=False, progress=progress, memo=memo)
            except Exception as exc:  # noqa: BLE001  (one fold's failure must not stop the others)
                counts["failed"] += 1
                log(f"{name}: fold {fold} FAILED: {type(exc).__name__}: {exc}")
                continue
            if what in counts:
                counts[what] += 1
            if what == "trained":
                log(f"{name}: fold {fold} saved")
                if commit:
                    _commit(current, f"results: {name}, fold {fold} ({current.key})")
            elif what == "busy":
                log(f"{name}: fold {fold} is being trained by another process")
        result = finish_cell(cfg, experiment.metrics(cfg), record_pretrained=experiment.record_pretrained, memo=memo)
        if result is not None:
            counts["finished"] += 1
            log(f"{name}: finished ({current.key})")
            if commit:
                _commit(current, f"results: {name} finished ({current.key})")
    return counts


def grid_status(cells: Iterable) -> pd.DataFrame:
    """One row per cell: its name, run key, folds saved and running, state, the compute hours
    of its saved folds and an estimate of the hours left (from saved folds of cells of the same
    network, dataset and length; NaN where none is saved yet)."""
    rows = []
    memo: dict = {}
    for cfg in cells:
        current = cell_run(cfg, memo)
        info = current.part_info()
        saved = [int(n.removeprefix("fold")) for n in info]
        running = [f for f in range(cfg.n_folds) if f not in saved and is_locked(lock_path(current, f"fold{f}"))]
        hours = sum(i["wall_time_s"] for i in info.values()) / 3600
        state = "done" if current.complete else ("running" if running else ("started" if saved else "pending"))
        rows.append({"cell": describe(cfg), "experiment": cfg.EXPERIMENT, "key": current.key, "family": _family(cfg),
                     "folds": cfg.n_folds, "saved": len(saved), "running": len(running), "state": state,
                     "cpu_hours": hours, "fold_hours": [i["wall_time_s"] / 3600 for i in info.values()]})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    per_fold = {}
    for family, group in table.groupby("family", sort=False):
        hours = [h for hs in group["fold_hours"] for h in hs]
        per_fold[family] = float(np.mean(hours)) if hours else np.nan
    table["hours_left"] = [(r.folds - r.saved) * per_fold[r.family] for r in table.itertuples()]
    return table.drop(columns=["family", "fold_hours"])
