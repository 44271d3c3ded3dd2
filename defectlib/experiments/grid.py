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

import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from . import rec004, seg000, seg004
from .common import cell_run, checkpoint_hours, finish_cell, lock_path, train_one_fold
from ..locks import is_locked


@dataclass(frozen=True)
class Experiment:
    """How the grid trains and finishes the cells of one experiment."""

    module: object
    #: The config class of one cell.
    config: type
    record_pretrained: bool

    def train_fold(self) -> Callable:
        return self.module._train_fold

    def metrics(self, cfg) -> Callable[[pd.DataFrame], dict]:
        return partial(self.module.cell_metrics, cfg)


EXPERIMENTS = {
    "seg000": Experiment(seg000, seg000.Seg000Config, record_pretrained=False),
    "rec004": Experiment(rec004, rec004.Rec004Config, record_pretrained=True),
    "seg004": Experiment(seg004, seg004.Seg004Config, record_pretrained=True),
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

    The order is a schedule for a grid that takes many sessions: each stage answers a question
    the earlier ones left open, and costly cells that only add detail come late.

    1. Seed 000's main question: the proposed network at every dilation, at the main size and
       at the resolution study's first larger size.
    2. Seed 004 on the first dataset (KolektorSDD): recognition without augmentation, both
       segmentation networks, DR with augmentation.
    3. The baselines at the spread study's dilations, at the main size; then the first baseline
       of ``models`` (DeepLabv3+) at its larger size, at the first of those dilations.
    4. Seed 004's proposed methods on the other datasets (MagneticTile): DR without augmentation
       and the improved network.
    5. The proposed network's larger sizes at every dilation (the paper's own size is where
       seed 000's main question is answered).
    6. Their comparisons on the other datasets: the ResNet-50 classifier without augmentation,
       plain DeepLabv3+.
    7. The image classifier with augmentation on the first dataset (in the converged profile the
       costliest recognition cell: four times the pairs a step), the first baseline's larger
       size at the other spread dilations, the recognition's resolution study.
    8. Augmentation on the other datasets (DR, then the classifier), the baselines at the main
       size at the other dilations, the spread study's other seeds, the other baselines' larger
       size, seed 004's ablation.
    """
    s000 = seg000.Seg000GridConfig.from_profile(profile)
    r004 = rec004.Rec004GridConfig.from_profile(profile)
    s004 = seg004.Seg004GridConfig.from_profile(profile)
    main000 = s000.cells()
    baselines = [c for c in main000 if c.model != "proposed"]
    spread_baselines = [c for c in baselines if c.dilation in s000.seed_dilations]
    recognition = r004.cells() + r004.resolution_cells()
    segmentation = s004.cells()
    datasets = sorted({c.dataset for c in recognition + segmentation}, key=lambda d: d != "kolektorsdd")
    first_dataset = lambda c: c.dataset == datasets[0]  # noqa: E731
    resolution = s000.resolution_cells()
    first_size = [c for c in resolution if c.input_size == resolution[0].input_size] if resolution else []
    larger = [c for c in resolution if c not in first_size]
    baselines_larger = s000.baseline_resolution_cells()
    first_baseline = next((m for m in s000.models if m != "proposed"), None)
    lead_larger = [c for c in baselines_larger if c.model == first_baseline]
    main_recognition = r004.cells()
    plain = [c for c in main_recognition if not c.augment]
    dr_plain = [c for c in plain if c.method == "dr"]
    dr_augmented = [c for c in main_recognition if c.augment and c.method == "dr"]
    classifier_augmented = [c for c in main_recognition if c.augment and c.method != "dr"]
    improved = [c for c in segmentation if c.model == "improved"]
    on_first = lambda cells: [c for c in cells if first_dataset(c)]  # noqa: E731
    on_others = lambda cells: [c for c in cells if not first_dataset(c)]  # noqa: E731
    order = [
        *[c for c in main000 if c.model == "proposed"], *first_size,  # 1
        *on_first(plain), *on_first(segmentation), *on_first(dr_augmented),  # 2
        *spread_baselines, *[c for c in lead_larger if c.dilation == s000.seed_dilations[0]],  # 3
        *on_others(dr_plain), *on_others(improved),  # 4
        *larger,  # 5
        *on_others(plain), *on_others(segmentation),  # 6
        *on_first(classifier_augmented), *lead_larger, *r004.resolution_cells(),  # 7
        *on_others(dr_augmented), *on_others(classifier_augmented),  # 8
        *baselines, *s000.seed_cells(), *baselines_larger, *s004.ablation_cells(),
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
        time.sleep(2)


#: A fold is started before a deadline only if this many times its estimated hours still fit.
DEADLINE_MARGIN = 1.2
#: A resumed fold is estimated at no less than this share of a whole fold (its test images
#: and whatever its checkpoints do not cover are still to come).
RESUMED_FLOOR = 0.05


def run_worker(cells: Iterable, *, commit: bool = False, progress: bool = True, log=print,
               deadline: float | None = None,
               fold_hours: Mapping[str, float] | Callable[[], Mapping[str, float]] | None = None) -> dict[str, int]:
    """Train every fold of ``cells`` that no process has saved or is training; finish the cells.

    A fold another process holds is skipped (that process finishes it and its cell). With
    ``commit`` every saved fold and finished cell is committed to git (the run folder only).
    A fold that raises is reported (cell, fold, error) and the worker goes on; its checkpoint
    stays, and the next worker tries it again.

    With a ``deadline`` (seconds since the epoch, as :func:`time.time`) a fold is started only
    when :data:`DEADLINE_MARGIN` times its estimated hours (``fold_hours``, by run key, less
    the training hours its checkpoints hold (:func:`~.common.checkpoint_hours`), but at least
    :data:`RESUMED_FLOOR` of the estimate; a cell without an estimate is not started) end
    before it; the others are left for a later run and
    the worker goes on to cells further down the order whose folds fit. Use it when the
    machine, and with it the checkpoints in the cache, may be gone after the deadline: the
    time goes to folds that can be saved. ``fold_hours`` may be a function returning that
    mapping; it is called again after every saved fold, so a cell's first saved fold replaces
    a bench estimate with its own time for the folds that follow.

    Returns counts: ``trained`` folds, ``busy`` folds (skipped), ``failed`` folds,
    ``deferred`` folds (left for after the deadline), ``finished`` cells.
    """
    counts = {"trained": 0, "busy": 0, "failed": 0, "deferred": 0, "finished": 0}
    memo: dict = {}
    estimate = fold_hours if callable(fold_hours) else (lambda: fold_hours or {})
    hours_by_key = estimate() if deadline is not None else {}
    for cfg in cells:
        experiment = EXPERIMENTS[cfg.EXPERIMENT]
        name = describe(cfg)
        current = cell_run(cfg, memo)
        if current.complete:
            continue
        for fold in range(cfg.n_folds):
            if current.has_part(f"fold{fold}"):
                continue
            pending = not is_locked(lock_path(current, f"fold{fold}"))
            if deadline is not None and pending:
                hours = hours_by_key.get(current.key, math.nan)
                if not math.isnan(hours):  # an interrupted fold needs only what its checkpoints lack
                    hours = max(hours - checkpoint_hours(current, fold), RESUMED_FLOOR * hours)
                if math.isnan(hours) or time.time() + DEADLINE_MARGIN * hours * 3600 > deadline:
                    counts["deferred"] += 1
                    left = (deadline - time.time()) / 3600
                    log(f"{name}: fold {fold} left for later (about {hours:.2f} h, {left:.2f} h to the deadline)")
                    continue
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
                if deadline is not None and callable(fold_hours):
                    hours_by_key = estimate()
            elif what == "busy":
                log(f"{name}: fold {fold} is being trained by another process")
        result = finish_cell(cfg, experiment.metrics(cfg), record_pretrained=experiment.record_pretrained, memo=memo)
        if result is not None:
            counts["finished"] += 1
            log(f"{name}: finished ({current.key})")
            if commit:
                _commit(current, f"results: {name} finished ({current.key})")
    return counts


def held_hours(cells: Iterable) -> list[float]:
    """Per cell, the training hours the checkpoints of its unsaved folds hold
    (:func:`~.common.checkpoint_hours`): work an interrupted run has done and a resumed one
    will not repeat."""
    memo: dict = {}
    out = []
    for cfg in cells:
        current = cell_run(cfg, memo)
        out.append(0.0 if current.complete else
                   sum(checkpoint_hours(current, f) for f in range(cfg.n_folds) if not current.has_part(f"fold{f}")))
    return out


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
