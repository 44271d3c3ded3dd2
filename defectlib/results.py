"""The results cache: ``<results>/<experiment>/<run-key>/``, atomic and resumable.

A run folder holds

``samples.csv``
    Per-sample outputs (at least sample id, fold, label, and the score where a model scores).
``metrics.json``
    The run's metrics.
``provenance.json``
    Full config, git commit, package versions, device, wall time, folds-manifest hashes.
    Written last: its presence is what marks a run complete.
``parts/``
    Finished pieces of an unfinished run (one per fold, say), so a re-run continues where
    an interrupted one stopped.
``artifacts/``
    Small arrays a chapter needs to draw its figures without the dataset.

The run key is ``<profile>-<hash>``, the hash of the config and the folds manifests' SHA-256
(which pin the data too, see :mod:`defectlib.data.folds`). Every file is written atomically.
Weights and checkpoints never go here; they go under :func:`defectlib.paths.cache_root`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import atomic
from .config import ExperimentConfig
from .data.folds import FoldsManifest
from .paths import project_root, results_root

PROVENANCE = "provenance.json"
_PACKAGES = (
    "defectlib", "torch", "torchvision", "numpy", "opencv-python-headless", "scikit-learn",
    "pandas", "segmentation-models-pytorch", "papermill",
)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _manifest_info(manifest: "str | FoldsManifest") -> dict[str, Any]:
    if isinstance(manifest, str):
        return {"sha256": manifest}
    return {
        "file": manifest.path.name,
        "sha256": manifest.sha256,
        "data_checksum": manifest.data_checksum,
        "n_folds": manifest.n_folds,
        "seed": manifest.seed,
    }


def run_key(config: ExperimentConfig, manifests: Mapping[str, "str | FoldsManifest"]) -> str:
    """``<profile>-<12 hex>``: the hash of the config and the folds manifests' SHA-256.

    Examples
    --------
    >>> class C(ExperimentConfig):
    ...     EXPERIMENT = "demo"
    >>> a = run_key(C(profile="cpu"), {"kolektorsdd": "ab"})
    >>> a.startswith("cpu-"), a == run_key(C(profile="cpu", seed=1), {"kolektorsdd": "ab"})
    (True, False)
    """
    shas = {name: _manifest_info(m)["sha256"] for name, m in sorted(manifests.items())}
    payload = atomic.to_json({"config": config.to_dict(), "manifests": shas})
    return f"{config.profile}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


#: Tracked folders that hold what runs produce, not code: changes there leave a run's code clean.
OUTPUT_PATHS = ("book/results",)


def git_state(root: Path | None = None) -> dict[str, Any]:
    """The commit of the project checkout and whether tracked code differs from it.

    ``dirty`` is True when a tracked file outside :data:`OUTPUT_PATHS` differs from the commit
    (results added to or moved out of the cache are not code); ``changed`` lists those files (at
    most 20). Outside a git checkout: commit "unknown", dirty None.
    """
    root = root or project_root()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                     *(f":(top,exclude){path}" for path in OUTPUT_PATHS))
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    changed = [line[3:] for line in status.splitlines() if line.strip()]  # "XY path"
    return {"commit": commit, "dirty": bool(changed), "changed": changed[:20]}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    import torch

    versions["torch_build"] = torch.__version__  # e.g. 2.14.1+cu130: which build of torch
    return versions


def device_info() -> dict[str, Any]:
    """The machine a run computed on, as recorded in its provenance.

    Platform, processor and its model, logical CPUs, PyTorch's threads, the host name, whether
    CUDA is available and, where it can be asked, the GPU's name (``None`` where CUDA cannot be
    queried, as in a process forked after its parent initialised CUDA).
    """
    import os

    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info["hostname"] = platform.node()
    if torch.cuda.is_available():
        try:
            info["gpu"] = torch.cuda.get_device_name(0)
        except RuntimeError:  # CUDA cannot be initialised here: the run's record must still be written
            info["gpu"] = None
    return info


@dataclass(frozen=True)
class RunResult:
    """A finished run read back from disk."""

    key: str
    path: Path
    samples: pd.DataFrame
    metrics: dict[str, Any]
    provenance: dict[str, Any]

    @property
    def config(self) -> ExperimentConfig:
        """The run's config, typed (:func:`~defectlib.config.config_from_dict` of its provenance)."""
        from .config import config_from_dict

        return config_from_dict(self.provenance["config"])

    def artifact(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.path / "artifacts" / f"{name}.npz") as data:
            return {k: data[k] for k in data.files}


class Run:
    """One run folder: find out whether it is done, save its parts, finish it.

    Examples
    --------
    >>> import tempfile
    >>> class C(ExperimentConfig):
    ...     EXPERIMENT = "demo"
    >>> run = Run(C(profile="smoke"), {"d": "00"}, root=tempfile.mkdtemp())
    >>> run.complete, run.has_part("fold0")
    (False, False)
    >>> run.save_part("fold0", pd.DataFrame({"sample_id": ["a"], "fold": [0], "label": [1], "score": [0.9]}),
    ...               seconds=1.5)
    >>> result = run.finish(run.load_parts(), {"f1": 1.0})
    >>> run.complete, result.metrics
    (True, {'f1': 1.0})
    """

    def __init__(
        self,
        config: ExperimentConfig,
        manifests: Mapping[str, "str | FoldsManifest"],
        *,
        root: str | Path | None = None,
    ) -> None:
        if not config.EXPERIMENT:
            raise ValueError(f"{type(config).__name__} sets no EXPERIMENT name")
        self.config = config
        self.manifests = {name: _manifest_info(m) for name, m in manifests.items()}
        self.key = run_key(config, manifests)
        self.path = Path(root or results_root()) / config.EXPERIMENT / self.key
        # The code that runs is the code at the start (files edited later do not change it).
        self._git = git_state()

    # -- state ------------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return (self.path / PROVENANCE).is_file()

    def _part(self, name: str) -> Path:
        return self.path / "parts" / f"{name}.csv"

    def has_part(self, name: str) -> bool:
        return self._part(name).is_file()

    def save_part(self, name: str, table: pd.DataFrame, *, seconds: float, checks: Mapping[str, Any] | None = None) -> None:
        """Save one finished piece (atomically): its table, the seconds of computation it took,
        where and when it finished, the code that made it, and its ``checks``."""
        info = {"wall_time_s": round(float(seconds), 3), "finished_utc": _now(), "git": self._git,
                "device": device_info(), "checks": dict(checks or {})}
        atomic.write_json(self.path / "parts" / f"{name}.json", info)
        atomic.write_csv(self._part(name), table)

    def part_info(self) -> dict[str, dict[str, Any]]:
        """The JSON record of every saved part, by name."""
        return {p.stem: json.loads(p.read_text()) for p in sorted((self.path / "parts").glob("*.json"))
                if self._part(p.stem).is_file()}

    def part_checks(self) -> dict[str, dict[str, Any]]:
        """The ``checks`` of every saved part, by name."""
        return {name: info.get("checks", {}) for name, info in self.part_info().items()}

    def load_part(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self._part(name), dtype={"sample_id": str})

    def load_parts(self) -> pd.DataFrame:
        parts = sorted((self.path / "parts").glob("*.csv"))
        return pd.concat([pd.read_csv(p, dtype={"sample_id": str}) for p in parts], ignore_index=True)

    def save_artifact(self, name: str, **arrays: np.ndarray) -> None:
        atomic.write_npz(self.path / "artifacts" / f"{name}.npz", **arrays)

    # -- finishing --------------------------------------------------------------------------
    def _wall_time(self) -> float:
        return round(sum(info["wall_time_s"] for info in self.part_info().values()), 3)

    def finish(
        self,
        samples: pd.DataFrame,
        metrics: Mapping[str, Any],
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Write samples, metrics, then provenance (the completion mark); return the result."""
        atomic.write_csv(self.path / "samples.csv", samples)
        atomic.write_json(self.path / "metrics.json", dict(metrics))
        provenance = {
            "experiment": self.config.EXPERIMENT,
            "run_key": self.key,
            "config": self.config.to_dict(),
            "folds_manifests": self.manifests,
            "git": self._git,
            "packages": package_versions(),
            "device": device_info(),
            "parts": {name: {k: info.get(k) for k in ("wall_time_s", "finished_utc")} | {
                "commit": info.get("git", {}).get("commit"), "cpu_model": info.get("device", {}).get("cpu_model")}
                for name, info in self.part_info().items()},
            "finished_utc": _now(),
            "wall_time_s": self._wall_time(),
            **(dict(extra) if extra else {}),
        }
        atomic.write_json(self.path / PROVENANCE, provenance)
        return self.load()

    def load(self) -> RunResult:
        """Read a complete run back."""
        if not self.complete:
            raise FileNotFoundError(f"{self.path}: run not complete (no {PROVENANCE})")
        return read_result(self.path)


def read_result(path: str | Path) -> RunResult:
    """Read the complete run folder ``path`` back (its key is the folder's name)."""
    path = Path(path)
    return RunResult(
        key=path.name,
        path=path,
        samples=pd.read_csv(path / "samples.csv", dtype={"sample_id": str}),
        metrics=json.loads((path / "metrics.json").read_text()),
        provenance=json.loads((path / PROVENANCE).read_text()),
    )


def provenance_table(result: RunResult) -> pd.DataFrame:
    """The provenance of a run as a two-column table for a book page."""
    prov = result.provenance
    rows = {
        "run": f"{prov['experiment']}/{prov['run_key']}",
        "profile": prov["config"]["profile"],
        "code (git commit)": f"{prov['git']['commit'][:12]}{' + local changes' if prov['git'].get('dirty') else ''}",
        "device": prov["device"].get("gpu") or f"CPU ({prov['device']['cpu_count']} cores, {prov['device']['processor']})",
        "torch": prov["packages"].get("torch"),
        "finished (UTC)": prov["finished_utc"],
        # A run saved whole, not fold by fold, has no parts to time.
        "wall time (s)": prov["wall_time_s"] if prov.get("parts") else "not recorded",
    }
    for name, info in prov["folds_manifests"].items():
        rows[f"{name}: folds manifest"] = f"{info.get('file', '')} (sha256 {info['sha256'][:12]}…)"
        if "data_checksum" in info:
            rows[f"{name}: data checksum"] = f"sha256 {info['data_checksum'][:16]}…"
    return pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=pd.Index(list(rows), name="provenance"))
