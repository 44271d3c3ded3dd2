"""The performance chapter: :mod:`defectlib.bench` run as a cached experiment.

One run measures every model of :data:`defectlib.bench.BENCH_MODELS` at every input size of
its experiment's profiles (each in a fresh child process) and stores one row per measurement
(``samples.csv``) and the machine's measured matmul peak (``metrics.json``), with provenance.
Figures depend on the machine: the provenance names it, and the book shows whose they are.
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
from pydantic import Field, field_validator

from ..config import ExperimentConfig
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
    channels_last: bool = False

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
                       progress=progress, train_repeats=cfg.repeats, infer_repeats=2 * cfg.repeats)
    rows = pd.DataFrame(record.pop("rows"))
    metrics = {"matmul_peak_flops_per_s": record["matmul_peak_flops_per_s"], "machine": record["machine"]}
    return current.finish(rows, metrics)


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
