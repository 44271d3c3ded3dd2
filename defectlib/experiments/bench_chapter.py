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
                "machine": f"{device.get('cpu_model') or device.get('gpu') or '?'} ({device.get('cpu_count')} CPUs)",
                "bf16 native": device.get("bf16_native"),
                "model": model, "input": size, "arithmetic": "bfloat16 autocast" if amp else "float32",
                "training step (s)": train_s, "inference (ms)": 1e3 * infer_s,
                "commit": str(commit)[:7], "file": path.name,
            })
    return pd.DataFrame(rows)
