"""The performance chapter: :mod:`defectlib.bench` run as a cached experiment.

One run measures every model of :data:`defectlib.bench.BENCH_MODELS` at every input size of
its experiment's profiles (each in a fresh child process) and stores one row per measurement
(``samples.csv``) and the machine's measured matmul peak (``metrics.json``), with provenance.
Figures depend on the machine: the provenance names it, and the book shows whose they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

import pandas as pd
from pydantic import Field, field_validator

from ..config import ExperimentConfig
from ..errors import DefectlibError
from ..paths import results_root
from ..results import Run, RunResult


class BenchConfig(ExperimentConfig):
    """Which models, at which sizes, on which device, how many timed repeats."""

    EXPERIMENT: ClassVar[str] = "bench"
    PROFILES: ClassVar[dict] = {
        "smoke": {"models": ["proposed"], "sizes": [[64, 32]], "repeats": 1, "device": "cpu"},
        "cpu": {"device": "cpu"},
        "paper": {"device": "cuda"},
    }

    #: Models (keys of ``defectlib.bench.BENCH_MODELS``); None: all.
    models: list[str] | None = None
    #: Input sizes [H, W] for every model; None: each experiment's profile sizes.
    sizes: list[list[int]] | None = None
    #: Timed training steps per measurement (inference: twice as many), after 2 warm-up runs.
    repeats: int = Field(default=5, ge=1)
    device: str = "cpu"
    #: None: each model in its own layout (the proposed network channels-last); True / False:
    #: force one on every model.
    channels_last: bool | None = None
    #: What the processes do with freed memory (:mod:`defectlib.allocator`): "retained", as the
    #: study trains, or "system", the C library's default.
    heap: Literal["retained", "system"] = "retained"

    @field_validator("models")
    @classmethod
    def _models(cls, value):
        from ..bench import BENCH_MODELS

        if value is not None:
            unknown = [m for m in value if m not in BENCH_MODELS]
            if unknown:
                raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(BENCH_MODELS)}")
        return value


def run(cfg: BenchConfig, *, progress: bool = True) -> RunResult:
    """Measure (or read from the results cache) every model at every size."""
    from ..bench import BENCH_MODELS, default_sizes, run_bench

    current = Run(cfg, {})
    if current.complete:
        return current.load()
    models = cfg.models or list(BENCH_MODELS)
    sizes = ({BENCH_MODELS[m].experiment: [tuple(s) for s in cfg.sizes] for m in models}
             if cfg.sizes else default_sizes())
    record = run_bench(None, models=models, sizes=sizes, device=cfg.device, channels_last=cfg.channels_last,
                       progress=progress, train_repeats=cfg.repeats, infer_repeats=2 * cfg.repeats,
                       retain_freed_memory=cfg.heap == "retained")
    rows = pd.DataFrame(record.pop("rows"))
    metrics = {"matmul_peak_flops_per_s": record["matmul_peak_flops_per_s"], "machine": record["machine"]}
    return current.finish(rows, metrics)


class PerformanceConfig(ExperimentConfig):
    """The performance chapter's parameters: the benchmark's (:class:`BenchConfig`) and the
    budget checks' (:mod:`defectlib.experiments.budget`)."""

    EXPERIMENT: ClassVar[str] = "performance"
    PROFILES: ClassVar[dict] = {"smoke": {}, "cpu": {}, "paper": {}}

    models: list[str] | None = None
    sizes: list[list[int]] | None = None
    repeats: int | None = None
    channels_last: bool | None = None
    heap: Literal["retained", "system"] = "retained"
    #: The test fold the budget checks train and compare on.
    budget_fold: int = Field(default=0, ge=0)
    #: Train the budget checks (False: the chapter skips them and says so).
    budget_checks: bool = True
    #: bfloat16 autocast of the cells the chapter trains (the budget checks) and looks up (the
    #: profile's recorded time); None: the profile's. False on a CPU without bfloat16
    #: (:mod:`defectlib.precision`), as for the grid notebooks.
    amp: bool | None = None

    def bench(self) -> BenchConfig:
        """The benchmark's config (None = the bench profile's value)."""
        return BenchConfig.from_profile(self.profile, seed=self.seed, models=self.models, sizes=self.sizes,
                                        repeats=self.repeats, channels_last=self.channels_last,
                                        heap=self.heap)


def bench_table(result: RunResult) -> pd.DataFrame:
    """The measurements as the book shows them (one row per model and input)."""
    t = result.samples
    return pd.DataFrame({
        "model": t["model"],
        "input": t["input"],
        "parameters (M)": t["parameters"] / 1e6,
        "GFLOPs / image": t["gflops_per_image"],
        "training step (s)": t["train_step_s"],
        "inference (ms)": t["inference_s"] * 1e3,
        "images / s": t["images_per_s"],
        "peak memory (MB)": t["peak_memory_mb"],
        "inference, % of matmul peak": 100 * t["inference_fraction_of_peak"],
        "training, % of matmul peak": 100 * t["train_fraction_of_peak"],
    })


#: Named sets of speed levers of :func:`defectlib.bench.bench_model` (issue 6's levers).
#: "plain" is the network as first written: one BatchNorm per depthwise path, channels-first,
#: out-of-place bottleneck, BatchNorm left in at inference; "default" is what the study trains
#: and predicts with (shared BatchNorm, channels-last, in-place bottleneck, BatchNorm folded
#: into the convolutions at inference, freed memory kept in the process). Each row in between
#: turns on one more lever.
DEFAULT_LEVERS = "default (shared BN, channels-last, fused BN, retained heap)"
_SYSTEM = {"retain_freed_memory": False}
LEVER_SETS: dict[str, dict] = {
    "plain": {"bottleneck_inplace": False, "per_path_norm": True, "channels_last": False, "fuse_bn": False, **_SYSTEM},
    "per-path BN + channels-last": {"per_path_norm": True, "channels_last": True, "fuse_bn": False, **_SYSTEM},
    "shared BN, channels-first": {"channels_last": False, "fuse_bn": False, **_SYSTEM},
    "shared BN + channels-last": {"fuse_bn": False, **_SYSTEM},
    "shared BN + channels-last + fused BN": _SYSTEM,
    DEFAULT_LEVERS: {},
    "default + bf16 autocast": {"amp": True},
    "default + compile (freezing)": {"compile": True, "freezing": True},
}


class LeversConfig(ExperimentConfig):
    """One model at a few sizes under several named sets of speed levers (:data:`LEVER_SETS`)."""

    EXPERIMENT: ClassVar[str] = "bench-levers"
    PROFILES: ClassVar[dict] = {
        "smoke": {"sizes": [[64, 32]], "repeats": 1, "levers": ["plain", DEFAULT_LEVERS]},
        # torch.compile is left out of the cpu default: its cold compile costs ~4.5 min here.
        "cpu": {"levers": [k for k in LEVER_SETS if "compile" not in k]},
        "paper": {"device": "cuda"},
    }

    model: str = "proposed"
    #: Input sizes [H, W]: by default the issue's two targets (training at 704×256,
    #: inference at 1408×512).
    sizes: list[list[int]] = [[704, 256], [1408, 512]]
    levers: list[str] = list(LEVER_SETS)
    repeats: int = Field(default=10, ge=1)
    device: str = "cpu"

    @field_validator("levers")
    @classmethod
    def _levers(cls, value):
        unknown = [v for v in value if v not in LEVER_SETS]
        if unknown or not value:
            raise ValueError(f"unknown or no lever sets {unknown}; choose from {', '.join(LEVER_SETS)}")
        return value


def run_levers(cfg: LeversConfig, *, progress: bool = True) -> RunResult:
    """Measure (or read from the results cache) the model under every lever set."""
    from ..bench import BENCH_MODELS, run_bench

    current = Run(cfg, {})
    if current.complete:
        return current.load()
    sizes = {BENCH_MODELS[cfg.model].experiment: [tuple(s) for s in cfg.sizes]}
    rows, peaks = [], []
    for name in cfg.levers:
        record = run_bench(None, models=[cfg.model], sizes=sizes, device=cfg.device, progress=progress,
                           train_repeats=cfg.repeats, infer_repeats=2 * cfg.repeats, **LEVER_SETS[name])
        peaks.append(record["matmul_peak_flops_per_s"])
        rows.extend({"levers": name, **row} for row in record["rows"])
    metrics = {"matmul_peak_flops_per_s": max(peaks), "machine": record["machine"]}
    return current.finish(pd.DataFrame(rows), metrics)


def levers_table(result: RunResult) -> pd.DataFrame:
    """Training step (s) and inference (ms) per lever set (rows) and input size (columns)."""
    t = result.samples
    order = list(dict.fromkeys(t["levers"]))
    wide = t.pivot_table(index="levers", columns="input", values=["train_step_s", "inference_s"], aggfunc="first")
    out = pd.DataFrame(index=order)
    for size in dict.fromkeys(t["input"]):
        out[f"training step {size} (s)"] = wide[("train_step_s", size)]
        out[f"inference {size} (ms)"] = 1e3 * wide[("inference_s", size)]
        out[f"output max |Δ| {size}"] = t[t["input"] == size].set_index("levers")["output_max_abs_diff"]
    out.index.name = "levers"
    return out


#: Folder of the results cache that holds ``defectlib bench --out`` records from machines other
#: than the study's, each measured once in float32 and once under ``--amp``: the ``cpu``
#: profile's bfloat16 choice depends on the CPU (:mod:`defectlib.precision`).
OTHER_MACHINES = "bench-machines"


def machine_label(device: dict) -> str:
    """A machine in words, from a record's ``device`` (:func:`defectlib.results.device_info`).

    Examples
    --------
    >>> machine_label({"cpu_model": "Intel(R) Xeon(R) Processor", "cpu_count": 2})
    'Intel(R) Xeon(R) Processor (2 CPUs)'
    """
    return f"{device.get('cpu_model') or device.get('gpu') or '?'} ({device.get('cpu_count')} CPUs)"


def precision_by_machine(folder: str | Path | None = None) -> pd.DataFrame:
    """Training step and inference, float32 against bfloat16 autocast, from bench records.

    One row per record and measurement of ``folder`` (default: :data:`OTHER_MACHINES` in the
    results cache): the machine, whether it has bfloat16 instructions, the model, input and
    arithmetic, the times, and the code version and file they came from.

    Raises
    ------
    DefectlibError
        Naming the file, when a record is not a bench record.

    Examples
    --------
    >>> precision_by_machine("/nonexistent").empty
    True
    """
    folder = results_root() / OTHER_MACHINES if folder is None else Path(folder)
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            device, commit = record["device"], record["git"]["commit"]
            measured = [(r["model"], r["input"], bool(r["amp"]), r["train_step_s"], r["inference_s"])
                        for r in record["rows"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DefectlibError(f"{path}: not a record of 'defectlib bench --out' ({type(exc).__name__}: {exc})") from None
        for model, size, amp, train_s, infer_s in measured:
            rows.append({
                "machine": machine_label(device),
                "bf16 native": device.get("bf16_native"),
                "model": model, "input": size, "arithmetic": "bfloat16 autocast" if amp else "float32",
                "training step (s)": train_s, "inference (ms)": 1e3 * infer_s,
                "commit": str(commit)[:7], "file": path.name,
            })
    return pd.DataFrame(rows)


#: Sub-folder of :data:`OTHER_MACHINES` with whole cells of the study run on other machines:
#: ``<machine>/<experiment>/<run key>/`` keeps each run's ``provenance.json`` and
#: ``metrics.json`` as the run wrote them (samples and artifacts stay out: only the cost and the
#: headline metrics are compared).
OTHER_MACHINE_CELLS = "cells"


def _without_arithmetic(config: dict) -> str:
    """A cell's config as canonical JSON, without ``amp``: the same cell in either arithmetic."""
    return json.dumps({k: v for k, v in config.items() if k != "amp"}, sort_keys=True)


def _cells_by_config(profile: str) -> dict[str, tuple]:
    """The profile's cells (:func:`~defectlib.experiments.budget.study_cells`), keyed by
    :func:`_without_arithmetic` of their config."""
    from .budget import study_cells

    return {_without_arithmetic(cfg.to_dict()): (grid, label, cfg) for grid, label, cfg in study_cells(profile)}


def cells_by_machine(profile: str = "cpu", folder: str | Path | None = None) -> pd.DataFrame:
    """Cells of ``profile`` run on other machines, beside the same cells on the study's CPU.

    One row per record under ``folder`` (default: :data:`OTHER_MACHINE_CELLS` of
    :data:`OTHER_MACHINES` in the results cache) whose config is a cell of ``profile`` in
    either arithmetic (:func:`~defectlib.experiments.budget.study_cells`): grid, cell, family
    (:func:`~defectlib.experiments.budget.cell_family`), machine, bf16 native, arithmetic, heap
    (the allocator policy, :func:`~defectlib.experiments.budget.recorded`), wall_min and f1 of
    the record, the same of the profile's own run in the results cache (``study arithmetic``,
    ``study heap``, ``study wall_min``, ``study f1``; NaN where it is not cached), ``ratio``
    (the record's wall time over the study's), and the record's commit and ``finished (UTC)``
    (to the minute: machines of one name differ from host to host, and this tells runs
    apart). Records of other profiles are skipped. Nothing is trained.

    Raises
    ------
    DefectlibError
        Naming the file, when a record is not a run's provenance, or is a run of ``profile``
        that is no cell of its grids.
    """
    from .budget import cell_family, recorded
    from .common import cached_result

    folder = results_root() / OTHER_MACHINES / OTHER_MACHINE_CELLS if folder is None else Path(folder)
    cells = {}
    rows, memo = [], {}
    for path in sorted(folder.glob("**/provenance.json")):
        try:
            record = json.loads(path.read_text())
            config, device, wall_s = record["config"], record["device"], float(record["wall_time_s"])
            commit = record["git"]["commit"]
            metrics_path = path.with_name("metrics.json")
            metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DefectlibError(f"{path}: not the provenance of a run ({type(exc).__name__}: {exc})") from None
        if config.get("profile") != profile:
            continue
        if not cells:
            cells = _cells_by_config(profile)
        match = cells.get(_without_arithmetic(config))
        if match is None:
            raise DefectlibError(f"{path}: a {profile!r} run that is no cell of the study's grids or budget checks")
        grid, label, cfg = match
        study = cached_result(cfg, memo=memo)
        mine = recorded(study)
        rows.append({
            "grid": grid, "cell": label, "family": cell_family(cfg),
            "machine": machine_label(device),
            "bf16 native": device.get("bf16_native"),
            "arithmetic": "bfloat16" if config.get("amp") else "float32", "heap": record.get("heap", "system"),
            "wall_min": wall_s / 60,
            "f1": metrics.get("f1", float("nan")),
            "study arithmetic": "bfloat16" if cfg.amp else "float32", "study heap": mine["heap"],
            "study wall_min": mine["wall_min"],
            "study f1": study.metrics.get("f1", float("nan")) if study else float("nan"),
            "ratio": wall_s / 60 / mine["wall_min"], "commit": str(commit)[:7],
            "finished (UTC)": str(record.get("finished_utc", ""))[:16].replace("T", " "),
        })
    return pd.DataFrame(rows)


def profile_on_machines(times: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """The profile's recorded time carried over, cell by cell, to each machine of ``cells``.

    ``times``: :func:`~defectlib.experiments.budget.recorded_times` (grid, family, wall_min,
    finished); ``cells``: :func:`cells_by_machine`. Each finished cell of ``times`` is scaled
    by the median ``ratio`` of its family's cells measured on the machine. One row per machine
    and grid, and a total per machine: ``cells`` (finished on the study's CPU), ``scaled``
    (those with a measured family), ``families`` measured, ``study_h`` (all the finished
    cells) and ``projected_h`` (the scaled cells only: where ``scaled < cells`` it is a lower
    bound). An estimate: it assumes each family's cells slow down alike.

    Examples
    --------
    >>> times = pd.DataFrame({"grid": ["g", "g"], "family": ["a", "b"], "wall_min": [60.0, 30.0],
    ...                       "finished": [True, True]})
    >>> cells = pd.DataFrame({"machine": ["m"], "family": ["a"], "ratio": [2.0]})
    >>> profile_on_machines(times, cells)[["cells", "scaled", "study_h", "projected_h"]]
                 cells  scaled  study_h  projected_h
    machine grid
    m       g        2       1      1.5          2.0
            total    2       1      1.5          2.0
    """
    done = times[times["finished"]]
    out = []
    for machine, mine in cells.groupby("machine", sort=False):
        ratio = mine.groupby("family")["ratio"].median().dropna()
        scaled = done.assign(projected=done["wall_min"] * done["family"].map(ratio))
        per_grid = scaled.groupby("grid", sort=False).agg(
            cells=("wall_min", "size"), scaled=("projected", "count"),
            families=("family", lambda f: int(f[f.isin(ratio.index)].nunique())),
            study_h=("wall_min", "sum"), projected_h=("projected", "sum"))
        per_grid.loc["total"] = [per_grid["cells"].sum(), per_grid["scaled"].sum(), len(ratio),
                                 per_grid["study_h"].sum(), per_grid["projected_h"].sum()]
        per_grid[["study_h", "projected_h"]] /= 60
        out.append(per_grid.assign(machine=machine).set_index("machine", append=True).swaplevel())
    if not out:
        return pd.DataFrame(columns=["cells", "scaled", "families", "study_h", "projected_h"])
    return pd.concat(out).astype({"cells": int, "scaled": int, "families": int}).rename_axis(["machine", "grid"])


#: Sub-folder of :data:`OTHER_MACHINES` with whole notebooks run on other machines: one JSON
#: record of :func:`defectlib.book.notebook_run` per notebook (its papermill time, and the
#: provenance of every run it wrote), as ``defectlib book`` records them.
OTHER_MACHINE_NOTEBOOKS = "notebooks"


def notebooks_by_machine(profile: str = "cpu", folder: str | Path | None = None, *,
                         cells: pd.DataFrame, times: pd.DataFrame) -> pd.DataFrame:
    """Runs of whole notebooks on other machines, each cell against its estimate there.

    ``folder`` (default: :data:`OTHER_MACHINE_NOTEBOOKS` of :data:`OTHER_MACHINES` in the
    results cache) holds :func:`~defectlib.book.notebook_run` records; those whose parameters
    name another profile are skipped. ``cells``: :func:`cells_by_machine` (the measured ratios
    the estimate uses); ``times``: :func:`~defectlib.experiments.budget.recorded_times` of
    ``profile``. One row per run the notebook wrote: machine, notebook, duration_min (the
    whole notebook), cached_before (results cached when it started), grid, cell, family,
    arithmetic, wall_min, study wall_min (the cell as recorded on the study's CPU), ratio (the
    median of the cells of its network measured on that machine, from ``cells``),
    projected_min (study wall_min × ratio: what :func:`profile_on_machines` assumes for it),
    f1. A run that is no cell of the profile (a benchmark) has blank cell columns. Nothing is
    trained. :func:`notebook_totals` sums it per notebook.

    Raises
    ------
    DefectlibError
        Naming the file, when a record is not a notebook run, or its runs come from more than
        one machine.
    """
    from .budget import cell_family

    folder = results_root() / OTHER_MACHINES / OTHER_MACHINE_NOTEBOOKS if folder is None else Path(folder)
    study = None
    recorded_min = times.set_index(["grid", "cell"])["wall_min"]
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            notebook, duration, runs = record["notebook"], float(record["duration_s"]), record["runs"]
            params = record.get("parameters", {})
            devices = {machine_label(run["device"]) for run in runs}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DefectlibError(f"{path}: not a record of defectlib.book.notebook_run ({type(exc).__name__}: {exc})") from None
        if params.get("profile", profile) != profile or not runs:
            continue
        if len(devices) > 1:
            raise DefectlibError(f"{path}: runs from more than one machine ({', '.join(sorted(devices))})")
        machine = devices.pop()
        ratio = cells[cells["machine"] == machine].groupby("family")["ratio"].median() if len(cells) else pd.Series(dtype=float)
        if study is None:
            study = _cells_by_config(profile)
        for run in runs:
            grid, label, cfg = study.get(_without_arithmetic(run["config"] or {}), (None, None, None))
            family = None if cfg is None else cell_family(cfg)
            mine = recorded_min.get((grid, label), float("nan"))
            r = ratio.get(family, float("nan"))
            rows.append({
                "machine": machine, "notebook": notebook, "duration_min": duration / 60,
                "cached_before": record.get("cached_before"),
                "grid": grid, "cell": label, "family": family,
                "arithmetic": "bfloat16" if (run["config"] or {}).get("amp") else "float32",
                "wall_min": float(run["wall_time_s"]) / 60, "study wall_min": mine, "ratio": r,
                "projected_min": mine * r, "f1": run.get("f1"),
                "commit": str((run.get("git") or {}).get("commit", ""))[:7],
            })
    return pd.DataFrame(rows)


def notebook_totals(runs: pd.DataFrame) -> pd.DataFrame:
    """:func:`notebooks_by_machine` summed per machine and notebook.

    Columns: duration_min (the notebook), runs (that it wrote), cells_min (their wall time),
    outside_min (the rest: loading and decoding data, evaluation outside the runs, figures,
    kernel start), projected (cells with an estimate), projected_min (their estimate, from the
    cells' ratios) and measured/projected (their measured wall time over it).

    Examples
    --------
    >>> runs = pd.DataFrame({"machine": ["m", "m"], "notebook": ["n", "n"], "duration_min": [30.0, 30.0],
    ...                      "wall_min": [10.0, 14.0], "projected_min": [12.0, 12.0]})
    >>> notebook_totals(runs).round(2).to_dict("records")[0]
    {'duration_min': 30.0, 'runs': 2, 'cells_min': 24.0, 'outside_min': 6.0, 'projected': 2, 'projected_min': 24.0, 'measured/projected': 1.0}
    """
    with_estimate = runs.assign(estimated_min=runs["wall_min"].where(runs["projected_min"].notna()))
    out = with_estimate.groupby(["machine", "notebook"], sort=False).agg(
        duration_min=("duration_min", "first"), runs=("wall_min", "size"), cells_min=("wall_min", "sum"),
        projected=("projected_min", "count"), projected_min=("projected_min", "sum"),
        estimated_min=("estimated_min", "sum"))
    out.insert(3, "outside_min", out["duration_min"] - out["cells_min"])
    out["measured/projected"] = out["estimated_min"] / out["projected_min"]
    return out.drop(columns="estimated_min")


def checked_projection(projected: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """:func:`profile_on_machines`' estimate of the whole profile, checked against the whole
    notebooks run on the same machine (:func:`notebooks_by_machine`).

    One row per machine that has both. Columns: ``cells`` (the profile's cells the estimate
    scales), ``checked`` (runs of those cells in whole notebooks), ``measured_min`` and
    ``estimated_min`` (their wall time, and the estimate for them), ``measured/estimated``,
    ``outside_min`` (the notebooks' time outside their runs), ``projected_h`` (the estimate's
    total) and ``corrected_h`` (``projected_h`` × ``measured/estimated``: the estimate rescaled
    by how far off it was on the checked cells; still an estimate, since it assumes the other
    cells are off by as much).

    Examples
    --------
    >>> projected = pd.DataFrame({"cells": [3, 3], "scaled": [3, 3], "projected_h": [2.0, 2.0]},
    ...     index=pd.MultiIndex.from_tuples([("m", "g"), ("m", "total")], names=["machine", "grid"]))
    >>> runs = pd.DataFrame({"machine": ["m", "m"], "notebook": ["n", "n"], "duration_min": [50.0, 50.0],
    ...                      "wall_min": [20.0, 25.0], "projected_min": [25.0, 25.0]})
    >>> checked_projection(projected, runs).round(2).to_dict("records")[0]
    {'cells': 3, 'checked': 2, 'measured_min': 45.0, 'estimated_min': 50.0, 'measured/estimated': 0.9, 'outside_min': 5.0, 'projected_h': 2.0, 'corrected_h': 1.8}
    """
    columns = ["cells", "checked", "measured_min", "estimated_min", "measured/estimated", "outside_min",
               "projected_h", "corrected_h"]
    rows = {}
    machines = set(projected.index.get_level_values("machine")) if len(projected) else set()
    for machine, mine in runs.groupby("machine", sort=False) if len(runs) else ():
        if machine not in machines:
            continue
        total = projected.loc[(machine, "total")]
        checked = mine[mine["projected_min"].notna()]
        ratio = checked["wall_min"].sum() / checked["projected_min"].sum() if len(checked) else float("nan")
        rows[machine] = {
            "cells": int(total["cells"]), "checked": len(checked), "measured_min": checked["wall_min"].sum(),
            "estimated_min": checked["projected_min"].sum(), "measured/estimated": ratio,
            "outside_min": notebook_totals(mine)["outside_min"].sum(),
            "projected_h": total["projected_h"], "corrected_h": total["projected_h"] * ratio,
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("machine")
