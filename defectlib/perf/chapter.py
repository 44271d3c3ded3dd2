"""The performance chapter's experiments: the bench run as cached, resumable results.

:class:`BenchConfig` measures every network at the input sizes a profile trains it at
(:func:`~defectlib.perf.bench.study_sizes`); :class:`LeversConfig` measures the proposed
network under the named lever sets of :data:`LEVER_SETS`. Each run keeps one row per
measurement (``samples.csv``) and the machine's matmul peak (``metrics.json``), with provenance
naming the machine.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd
from pydantic import Field, field_validator, model_validator

from ..config import ExperimentConfig
from ..models import MODELS
from ..results import Run, RunResult
from .bench import run_bench, study_sizes

__all__ = [
    "BenchConfig",
    "LEVER_SETS",
    "LeversConfig",
    "PerformanceConfig",
    "STUDY_LEVERS",
    "bench_table",
    "cached_bench",
    "levers_table",
    "profile_sizes",
    "run",
    "run_levers",
]


def profile_sizes(profile: str) -> dict[str, list[list[int]]]:
    """Per network, the input sizes ``[H, W]`` the study trains it at under ``profile``."""
    from ..experiments.grid import study_cells

    return {name: [list(s) for s in sizes] for name, sizes in study_sizes(study_cells(profile)).items()}


class _Measured(ExperimentConfig):
    """What every bench run shares: sizes (resolved from the profile), repeats, device, threads."""

    #: Network name → input sizes [H, W]; None: the sizes the profile's cells train at.
    sizes: dict[str, list[list[int]]] | None = None
    #: Timed training steps per measurement (inference: twice as many), after 2 warm-up runs.
    repeats: int = Field(default=5, ge=1)
    device: str = "cpu"
    #: Threads of every measurement (None: PyTorch's default). The study trains at one.
    threads: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _resolve_sizes(cls, data: Any) -> Any:
        # The sizes are part of the run key, so a change of the study's sizes measures anew.
        if isinstance(data, dict) and data.get("sizes") is None and "profile" in data:
            return {**data, "sizes": cls._profile_sizes(data["profile"], data)}
        return data

    @classmethod
    def _profile_sizes(cls, profile: str, data: dict) -> dict[str, list[list[int]]]:
        return profile_sizes(profile)

    @field_validator("sizes")
    @classmethod
    def _known(cls, value):
        unknown = [m for m in value or {} if m not in MODELS]
        if unknown:
            raise ValueError(f"unknown network(s) {unknown}; choose from {', '.join(MODELS)}")
        return value


class BenchConfig(_Measured):
    """Every network at every input size its profile trains it at."""

    EXPERIMENT: ClassVar[str] = "bench"
    PROFILES: ClassVar[dict] = {
        "smoke": {"sizes": {"seg000/proposed": [[64, 32]]}, "repeats": 1, "threads": 1},
        "converged": {"threads": 1},
        "paper": {"device": "cuda"},
    }


def run(cfg: BenchConfig, *, progress: bool = True) -> RunResult:
    """Measure (or read from the results cache) every network at its sizes."""
    current = Run(cfg, {})
    if current.complete:
        return current.load()
    record = run_bench(None, cfg.sizes, device=cfg.device, threads=cfg.threads, progress=progress,
                       train_repeats=cfg.repeats, infer_repeats=2 * cfg.repeats)
    metrics = {"matmul_peak_flops_per_s": record["matmul_peak_flops_per_s"], "machine": record["machine"]}
    return current.finish(pd.DataFrame(record["rows"]), metrics)


def cached_bench(profile: str) -> pd.DataFrame | None:
    """The samples of ``profile``'s bench run if it is in the results cache, else None
    (nothing is measured)."""
    current = Run(BenchConfig.from_profile(profile), {})
    return current.load().samples if current.complete else None


def bench_table(result: RunResult) -> pd.DataFrame:
    """The measurements as the book shows them (one row per network and input)."""
    t = result.samples
    return pd.DataFrame({
        "network": t["model"],
        "input": t["input"],
        "parameters (M)": t["parameters"] / 1e6,
        "GFLOPs / image": t["gflops_per_image"],
        "training step (s)": t["train_step_s"],
        "inference (ms)": t["inference_s"] * 1e3,
        "peak memory (MB)": t["peak_memory_mb"],
        "inference, % of matmul peak": 100 * t["inference_fraction_of_peak"],
        "training, % of matmul peak": 100 * t["train_fraction_of_peak"],
    })


#: The lever set the study trains and predicts with: the proposed network as built by default
#: (shared BatchNorm, in-place bottleneck, channels-last), BatchNorm folded at inference.
STUDY_LEVERS = "the study's (+ BatchNorm folded at inference)"
_PAPER_DRAWN = {"per_path_norm": True, "inplace": False}
#: Named sets of the proposed network's speed levers (:func:`~defectlib.perf.bench.bench_model`),
#: each turning on one more than the one before: from the network as the paper draws it to what
#: the study does, then levers the study does not use.
LEVER_SETS: dict[str, dict] = {
    "as drawn (BatchNorm per path, out of place, channels-first)":
        {"model_options": _PAPER_DRAWN, "channels_last": False, "fuse_bn": False},
    "+ one BatchNorm over the paths":
        {"model_options": {"inplace": False}, "channels_last": False, "fuse_bn": False},
    "+ in-place bottleneck": {"channels_last": False, "fuse_bn": False},
    "+ channels-last": {"fuse_bn": False},
    STUDY_LEVERS: {},
    "+ freed memory kept in the process": {"retain_freed_memory": True},
    "+ bfloat16 autocast": {"retain_freed_memory": True, "amp": True},
    "+ torch.compile (freezing)": {"retain_freed_memory": True, "compile": True, "freezing": True},
}


class LeversConfig(_Measured):
    """The proposed network at its sizes under several named lever sets (:data:`LEVER_SETS`)."""

    EXPERIMENT: ClassVar[str] = "bench-levers"
    PROFILES: ClassVar[dict] = {
        "smoke": {"sizes": {"seg000/proposed": [[64, 32]]}, "repeats": 1, "threads": 1,
                  "levers": [next(iter(LEVER_SETS)), STUDY_LEVERS]},
        # torch.compile's cold compile takes minutes on a CPU: left out unless asked for.
        "converged": {"threads": 1, "repeats": 10, "levers": [k for k in LEVER_SETS if "compile" not in k]},
        "paper": {"device": "cuda"},
    }

    levers: list[str] = list(LEVER_SETS)

    @classmethod
    def _profile_sizes(cls, profile: str, data: dict) -> dict[str, list[list[int]]]:
        return {"seg000/proposed": profile_sizes(profile)["seg000/proposed"]}

    @field_validator("levers")
    @classmethod
    def _levers(cls, value):
        unknown = [v for v in value if v not in LEVER_SETS]
        if unknown or not value:
            raise ValueError(f"unknown or no lever sets {unknown}; choose from {', '.join(LEVER_SETS)}")
        return value


def run_levers(cfg: LeversConfig, *, progress: bool = True) -> RunResult:
    """Measure (or read from the results cache) the network under every lever set."""
    current = Run(cfg, {})
    if current.complete:
        return current.load()
    rows, peaks = [], []
    for name in cfg.levers:
        record = run_bench(None, cfg.sizes, device=cfg.device, threads=cfg.threads, progress=progress,
                           train_repeats=cfg.repeats, infer_repeats=2 * cfg.repeats, **LEVER_SETS[name])
        peaks.append(record["matmul_peak_flops_per_s"])
        rows.extend({"levers": name, **row} for row in record["rows"])
    metrics = {"matmul_peak_flops_per_s": max(peaks), "machine": record["machine"]}
    return current.finish(pd.DataFrame(rows), metrics)


def levers_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Training step (s), inference (ms) and output difference per lever set (rows, in the
    order measured) and input size (columns).

    Examples
    --------
    >>> t = pd.DataFrame({"levers": ["a", "b"], "input": ["8×8", "8×8"], "train_step_s": [2.0, 1.0],
    ...                   "inference_s": [0.002, 0.001], "output_max_abs_diff": [0.0, 1e-6]})
    >>> levers_table(t).round(6).to_dict("index")["b"]
    {'training step 8×8 (s)': 1.0, 'inference 8×8 (ms)': 1.0, 'output max |Δ| 8×8': 1e-06}
    """
    out = pd.DataFrame(index=pd.Index(list(dict.fromkeys(samples["levers"])), name="levers"))
    for size in dict.fromkeys(samples["input"]):
        at = samples[samples["input"] == size].set_index("levers")
        out[f"training step {size} (s)"] = at["train_step_s"]
        out[f"inference {size} (ms)"] = 1e3 * at["inference_s"]
        out[f"output max |Δ| {size}"] = at["output_max_abs_diff"]
    return out


class PerformanceConfig(ExperimentConfig):
    """The performance chapter's parameters; None takes the bench profile's value."""

    EXPERIMENT: ClassVar[str] = "performance"

    #: Timed training steps per measurement (inference: twice as many).
    repeats: int | None = None
    #: Threads of every measurement.
    threads: int | None = None

    def bench(self) -> BenchConfig:
        return BenchConfig.from_profile(self.profile, seed=self.seed, repeats=self.repeats, threads=self.threads)

    def levers(self) -> LeversConfig:
        return LeversConfig.from_profile(self.profile, seed=self.seed, repeats=self.repeats, threads=self.threads)
