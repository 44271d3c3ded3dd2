"""The exported detector under each runtime beside the PyTorch path, in one run.

For every input size (by default 1408×512, the paper's, and the model's own input size) each
runtime (:mod:`defectlib.deploy.runtimes`) scores one random image (batch 1) ``repeats``
times after ``warmup`` calls. The runtimes take turns call by call (round-robin), so a load
that comes and goes on a shared machine falls on all of them alike; each one's time is the
median of its calls. The record (JSON) has one row per size and runtime with the median and
quartiles in milliseconds, and its speed-up over the PyTorch path at that size.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from .model import load_model
from .runtimes import RUNTIMES, runner

SIZES = ((1408, 512),)
THREADS = 2


def interleaved_times(runners: dict[str, Any], x: np.ndarray, *, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each runner's calls on ``x``, the runners taking turns call by call.

    Examples
    --------
    >>> t = interleaved_times({"a": lambda x: x, "b": lambda x: x}, np.zeros(1), repeats=3, warmup=1)
    >>> sorted(t), len(t["a"])
    (['a', 'b'], 3)
    """
    for _ in range(warmup):
        for run in runners.values():
            run(x)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - start)
    return times


def rows_for(size: tuple[int, int], times: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One row per runtime: median and quartiles (ms), and the speed-up over ``torch``.

    Examples
    --------
    >>> rows = rows_for((8, 8), {"torch": [0.02, 0.02], "openvino": [0.01, 0.01]})
    >>> [(r["runtime"], r["median_ms"], r["speedup_vs_torch"]) for r in rows]
    [('torch', 20.0, 1.0), ('openvino', 10.0, 2.0)]
    """
    base = statistics.median(times["torch"])
    rows = []
    for name, values in times.items():
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        rows.append({"input": f"{size[0]}x{size[1]}", "runtime": name, "median_ms": round(1e3 * float(median), 3),
                     "q1_ms": round(1e3 * float(q1), 3), "q3_ms": round(1e3 * float(q3), 3), "calls": len(values),
                     "speedup_vs_torch": round(base / float(median), 3)})
    return rows


def fastest(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per input size, the fastest runtime other than ``torch`` and its speed-up over it."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["runtime"] != "torch" and (row["input"] not in best
                                          or row["median_ms"] < best[row["input"]]["median_ms"]):
            best[row["input"]] = row
    return {size: {"runtime": r["runtime"], "speedup_vs_torch": r["speedup_vs_torch"]} for size, r in best.items()}


def bench_runtimes(folder: str | Path, out: str | Path, *, sizes=None, threads: int = THREADS, repeats: int = 20,
                   warmup: int = 3, runtimes=RUNTIMES, seed: int = 0) -> dict[str, Any]:
    """Time each runtime on a model directory at each size (batch 1); write and return the record.

    Parameters
    ----------
    folder : path-like
        A model directory with ``model.onnx`` (``defectlib export MODEL --onnx``).
    out : path-like
        The JSON file written.
    sizes : sequence of (H, W), optional
        Default: 1408×512 and the model's input size.
    threads : int
        Intra-op threads of every runtime (PyTorch: ``torch.set_num_threads``).
    """
    from ..results import device_info, package_versions

    model = load_model(folder)
    sizes = [tuple(s) for s in (sizes or [*SIZES, model.input_size])]
    sizes = list(dict.fromkeys(sizes))
    rng = np.random.default_rng(seed)
    rows = []
    start = time.perf_counter()
    import torch

    before = torch.get_num_threads()  # the PyTorch runner sets the process's threads; restored below
    try:
        for size in sizes:
            shape = (1, 1, *size)
            runners = {name: runner(name, model, threads=threads, shape=shape) for name in runtimes}
            x = rng.random(shape, dtype=np.float32)
            rows += rows_for(size, interleaved_times(runners, x, repeats=repeats, warmup=warmup))
    finally:
        torch.set_num_threads(before)
    record = {"model": str(model.folder), "network": model.info["network"], "threads": threads, "batch": 1,
              "repeats": repeats, "warmup": warmup, "rows": rows, "fastest": fastest(rows),
              "machine": device_info(), "packages": {**package_versions(), **_runtime_versions()},
              "wall_time_s": round(time.perf_counter() - start, 1),
              "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    atomic.write_json(out, record)
    return record


def _runtime_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in ("onnx", "onnxruntime", "openvino"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


__all__ = ["SIZES", "THREADS", "bench_runtimes", "fastest", "interleaved_times", "rows_for"]
