"""The study's grid on a Ray cluster: every missing fold a Ray task, results in the local cache.

:func:`run_ray` expands cells into folds and submits every fold that the results cache does not
hold (and no local worker is training) as a Ray task asking for ``cpus_per_fold`` CPUs and
``gpus_per_fold`` GPUs. A task runs on whichever node Ray gives it; no shared filesystem is
assumed:

1. the driver sends the cell's config and its folds manifest (the file's bytes);
2. the worker checks that the data under its own ``DEFECTLIB_DATA`` has the checksum the
   manifest records (:func:`check_worker_data`) and refuses to train otherwise;
3. the worker trains the fold into a temporary results folder (checkpoints stay in the
   worker's own ``DEFECTLIB_CACHE``, so a retried task on the same node resumes) and sends back
   the run folder's files (the fold's part table and record, its artifacts) as bytes;
4. the driver writes them into its results cache atomically, the part table last (its
   presence marks the fold saved), and finishes each cell once all its folds are saved.

A task that fails (an error, a worker that died, a node that left) is reported by cell and fold
and the others go on; the next invocation submits only the folds still missing. Training is
seeded per fold, so a fold trained by a Ray worker gives the numbers a local worker gives.

Ray is an optional dependency (``pip install defectlib[ray]``), imported only here.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm.auto import tqdm

from .. import atomic
from ..data import dataset_folder, dataset_spec, load_samples
from ..data.folds import FoldsManifest, content_hashes, data_checksum, read_manifest
from ..errors import DataError, DefectlibError, UnavailableError
from ..locks import is_locked
from .common import cell_folds, cell_run, finish_cell, lock_path, train_one_fold
from .grid import EXPERIMENTS, _commit, describe


def require_ray():
    """Import and return :mod:`ray`.

    Raises
    ------
    UnavailableError
        When Ray is not installed; the message says how to install it.
    """
    try:
        import ray
    except ImportError:
        raise UnavailableError(
            "the Ray executor needs Ray, which is not installed; install it with "
            "'pip install defectlib[ray]' (or 'pip install -e \".[ray]\"' in a checkout)") from None
    return ray


@dataclass(frozen=True)
class FoldTask:
    """One fold to train on the cluster, with what a worker needs to train it anywhere.

    Attributes
    ----------
    cfg
        The cell's config.
    fold : int
        The test fold.
    key : str
        The cell's run key on the driver; the worker's must agree (same code, same manifest).
    manifest_name : str
        The folds manifest's file name (it encodes dataset, folds, seed and data checksum).
    manifest_bytes : bytes
        The folds manifest itself.
    data_checksum : str
        The checksum of the data the manifest was made from.
    """

    cfg: Any
    fold: int
    key: str
    manifest_name: str
    manifest_bytes: bytes
    data_checksum: str

    @property
    def name(self) -> str:
        """The cell's short name and the fold, as progress and reports show them."""
        return f"{describe(self.cfg)} fold {self.fold}"


@dataclass
class FoldFailure:
    """A fold whose task failed: the cell's name, the fold, the run key and the error's text.

    Examples
    --------
    >>> str(FoldFailure("seg000 unet k=5 64×32 seed 0", 2, "smoke-0123456789ab", "the worker died"))
    'seg000 unet k=5 64×32 seed 0: fold 2 failed (smoke-0123456789ab): the worker died'
    """

    cell: str
    fold: int
    key: str
    error: str

    def __str__(self) -> str:
        return f"{self.cell}: fold {self.fold} failed ({self.key}): {self.error}"


@dataclass
class RayGridReport:
    """What :func:`run_ray` did.

    Attributes
    ----------
    trained : int
        Folds trained on the cluster and saved in the results cache.
    busy : int
        Folds skipped because another process was training them (a local worker), or whose
        part another process saved while the task ran.
    finished : int
        Cells finished (all their folds saved) during this run.
    failed : list of FoldFailure
        Folds whose task failed; the next invocation submits them again.
    """

    trained: int = 0
    busy: int = 0
    finished: int = 0
    failed: list[FoldFailure] = field(default_factory=list)


def node_name() -> str:
    """The host name of this process's node, and its Ray node id when in a Ray worker."""
    name = platform.node() or "unknown host"
    try:
        import ray

        if ray.is_initialized():
            return f"{name} (Ray node {ray.get_runtime_context().get_node_id()[:12]})"
    except Exception:  # noqa: BLE001 - naming the node must never be what fails
        pass
    return name


def check_worker_data(dataset: str, manifest: FoldsManifest, node: str | None = None):
    """Load ``dataset`` from this node's ``DEFECTLIB_DATA`` and check it is the manifest's data.

    Parameters
    ----------
    dataset : str
        The dataset's name.
    manifest : FoldsManifest
        The folds manifest the driver sent; its ``data_checksum`` is what the data must have.
    node : str, optional
        The node's name for the message (default :func:`node_name`).

    Returns
    -------
    pandas.DataFrame
        The dataset's sample table (:func:`defectlib.data.load_samples`).

    Raises
    ------
    DataError
        When the data's checksum differs from the manifest's; the message names the dataset,
        both checksums and the node. Also :func:`~defectlib.data.load_samples`'s errors (data
        missing or corrupt on this node).
    """
    table = load_samples(dataset)
    found = data_checksum(content_hashes(table))
    if found != manifest.data_checksum:
        fix = (f"delete {dataset_folder(dataset)} there to generate it again" if dataset_spec(dataset).generated else
               f"give this node the same copy of the data under its DEFECTLIB_DATA "
               f"('defectlib data folds {dataset}' there names the samples that differ)")
        raise DataError(
            f"dataset {dataset!r} on node {node or node_name()} is not the data of the folds manifest "
            f"{manifest.path.name}: its data checksum is {found}, the manifest's is {manifest.data_checksum}; {fix}.")
    return table


def _train_on_worker(task: FoldTask, train_fold: Callable | None, threads: int) -> dict[str, Any]:
    """The Ray task: check the data, train the fold into a temporary results folder, return its files.

    Returns ``{"status": "trained" | "busy", "files": {relative path: bytes}, "node": str}``;
    ``busy`` when a process on this node holds the fold's lock (the driver reports it, and a
    later invocation submits it again if it is still missing).
    """
    import torch

    node = node_name()
    cfg = task.cfg
    previous = os.environ.get("DEFECTLIB_RESULTS")
    with tempfile.TemporaryDirectory(prefix="defectlib-fold-") as tmp:
        os.environ["DEFECTLIB_RESULTS"] = str(Path(tmp) / "results")
        try:
            path = Path(tmp) / "results" / "folds" / task.manifest_name
            atomic.write_bytes(path, task.manifest_bytes)
            manifest = read_manifest(path)
            table = check_worker_data(cfg.dataset, manifest, node)
            memo = {(cfg.dataset, cfg.n_folds, cfg.folds_seed): (table, manifest)}
            current = cell_run(cfg, memo)
            if current.key != task.key:
                raise DefectlibError(
                    f"{describe(cfg)}: node {node} computes run key {current.key} where the driver has "
                    f"{task.key}; install the driver's version of defectlib on every node.")
            torch.set_num_threads(threads)
            trainer = train_fold or EXPERIMENTS[cfg.EXPERIMENT].train_fold()
            what = train_one_fold(cfg, trainer, task.fold, wait=False, progress=False, memo=memo)
            files = {p.relative_to(current.path).as_posix(): p.read_bytes()
                     for p in sorted(current.path.rglob("*")) if p.is_file() and not p.name.startswith(".")}
            return {"status": "busy" if what == "busy" else "trained", "files": files, "node": node}
        finally:
            if previous is None:
                os.environ.pop("DEFECTLIB_RESULTS", None)
            else:
                os.environ["DEFECTLIB_RESULTS"] = previous


def save_fold_files(current, fold: int, files: dict[str, bytes]) -> bool:
    """Write a fold's files, as a worker returned them, into the run folder ``current``.

    Every file is written atomically; the part table ``parts/fold<k>.csv``, whose presence marks
    the fold saved, is written last. Nothing is written when the fold is saved already.

    Returns
    -------
    bool
        True when the fold was written, False when another process had saved it.

    Raises
    ------
    DefectlibError
        When the files hold no part table for the fold, or a path leaves the run folder.
    """
    part = f"parts/fold{fold}.csv"
    if part not in files:
        raise DefectlibError(f"{current.path}: the worker returned no {part} (files: {sorted(files)})")
    for name in files:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            raise DefectlibError(f"{current.path}: the worker returned a file outside the run folder: {name}")
    if current.has_part(f"fold{fold}"):
        return False
    for name in sorted(files, key=lambda n: n == part):
        atomic.write_bytes(current.path / name, files[name])
    return True


def fold_tasks(cells: Iterable, memo: dict | None = None) -> tuple[list[FoldTask], int]:
    """Every fold of ``cells`` that the results cache does not hold and no process is training.

    Returns the tasks (cells in the given order, folds in order) and the number of folds
    skipped because a process on this machine holds their lock.
    """
    memo = {} if memo is None else memo
    tasks, busy = [], 0
    for cfg in cells:
        current = cell_run(cfg, memo)
        if current.complete:
            continue
        _, manifest = cell_folds(cfg, memo)
        raw = manifest.path.read_bytes()
        for fold in range(cfg.n_folds):
            if current.has_part(f"fold{fold}"):
                continue
            if is_locked(lock_path(current, f"fold{fold}")):
                busy += 1
                continue
            tasks.append(FoldTask(cfg=cfg, fold=fold, key=current.key, manifest_name=manifest.path.name,
                                  manifest_bytes=raw, data_checksum=manifest.data_checksum))
    return tasks, busy


def _error_text(error: BaseException) -> str:
    """One readable line for a task's error: the worker's exception, not Ray's wrapper."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    text = str(error).strip() or type(error).__name__
    return text if isinstance(error, DefectlibError) else f"{type(error).__name__}: {text}"


def run_ray(
    cells: Iterable,
    *,
    address: str | None = None,
    cpus_per_fold: float = 1,
    gpus_per_fold: float | None = None,
    retries: int = 1,
    commit: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    train_fold: Callable | None = None,
) -> RayGridReport:
    """Train every missing fold of ``cells`` as a Ray task and finish the cells as their folds do.

    Parameters
    ----------
    cells : iterable of configs
        The cells (:func:`defectlib.experiments.grid.study_cells`, possibly filtered).
    address : str, optional
        The Ray cluster to connect to (``ray.init(address=...)``, e.g. ``"auto"`` or
        ``"10.0.0.1:6379"``), unless this process is connected to a Ray already (then that one
        is used). Default: the cluster ``RAY_ADDRESS`` names, else a local Ray on this machine's
        cores, shut down again at the end.
    cpus_per_fold : float, optional
        CPUs each task asks for (and the torch threads it uses, at least one).
    gpus_per_fold : float, optional
        GPUs each task asks for; default 1 when the cluster has GPUs, else 0.
    retries : int, optional
        How often Ray re-runs a task whose worker died (``max_retries``); an exception raised by
        the training is not retried.
    commit : bool, optional
        Commit every saved fold and finished cell to git (the run folder only).
    progress : bool, optional
        Show a progress bar over the folds.
    log : callable, optional
        Receives a line with the number of folds submitted, then one per saved or failed fold
        and per finished cell.
    train_fold : callable, optional
        Trains a fold instead of the experiment's ``_train_fold`` (same signature); it is sent
        to the workers, so it must be picklable by Ray.

    Returns
    -------
    RayGridReport
        Folds trained, folds left to other processes, cells finished, and the failed folds
        (by cell and fold, with their errors).
    """
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
        started = True
    try:
        return _run(ray, list(cells), cpus_per_fold=cpus_per_fold, gpus_per_fold=gpus_per_fold, retries=retries,
                    commit=commit, progress=progress, log=log, train_fold=train_fold)
    finally:
        if started:
            ray.shutdown()


def _run(ray, cells, *, cpus_per_fold, gpus_per_fold, retries, commit, progress, log, train_fold) -> RayGridReport:
    report = RayGridReport()
    memo: dict = {}
    # Cells finished by an earlier run whose last fold was saved but not finished.
    for cfg in cells:
        _finish(cfg, memo, report, commit, log)
    tasks, report.busy = fold_tasks(cells, memo)
    if gpus_per_fold is None:
        gpus_per_fold = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    remote = ray.remote(_train_on_worker).options(num_cpus=cpus_per_fold, num_gpus=gpus_per_fold,
                                                  max_retries=retries, retry_exceptions=False)
    threads = max(1, int(cpus_per_fold))
    log(f"{len(tasks)} folds to train on Ray ({cpus_per_fold:g} CPU, {gpus_per_fold:g} GPU each)"
        + (f"; {report.busy} being trained by other processes" if report.busy else ""))
    pending = {}
    for task in tasks:
        pending[remote.remote(task, train_fold, threads)] = task
    with tqdm(total=len(tasks), desc="folds", unit="fold", disable=not progress) as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(done[0])
            current = cell_run(task.cfg, memo)
            try:
                answer = ray.get(done[0])
            except Exception as error:  # noqa: BLE001 - every failure is reported, the rest go on
                failure = FoldFailure(describe(task.cfg), task.fold, task.key, _error_text(error))
                report.failed.append(failure)
                log(str(failure))
            else:
                if answer["status"] == "trained" and save_fold_files(current, task.fold, answer["files"]):
                    report.trained += 1
                    log(f"{task.name} saved (trained on {answer['node']})")
                    if commit:
                        _commit(current, f"results: {describe(task.cfg)}, fold {task.fold} ({current.key})")
                    _finish(task.cfg, memo, report, commit, log)
                else:
                    report.busy += 1
                    log(f"{task.name} is being trained or was saved by another process")
            bar.update(1)
            bar.set_postfix(failed=len(report.failed), refresh=False)
    return report


def _finish(cfg, memo: dict, report: RayGridReport, commit: bool, log) -> None:
    """Finish ``cfg`` if all its folds are saved and it is not finished yet."""
    current = cell_run(cfg, memo)
    if current.complete or not all(current.has_part(f"fold{f}") for f in range(cfg.n_folds)):
        return
    experiment = EXPERIMENTS[cfg.EXPERIMENT]
    if finish_cell(cfg, experiment.metrics(cfg), record_pretrained=experiment.record_pretrained,
                   memo=memo) is not None:
        report.finished += 1
        log(f"{describe(cfg)}: finished ({current.key})")
        if commit:
            _commit(current, f"results: {describe(cfg)} finished ({current.key})")
