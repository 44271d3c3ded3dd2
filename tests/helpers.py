"""Shared test helpers: where the real datasets are, when they are present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def real_data_root() -> Path:
    """``$DEFECTLIB_DATA`` (relative to the project root), else ``../shared/data``."""
    env = os.environ.get("DEFECTLIB_DATA")
    if env:
        path = Path(env).expanduser()
        return path if path.is_absolute() else Path(__file__).resolve().parents[1] / path
    return Path(__file__).resolve().parents[2] / "shared" / "data"


REAL = real_data_root()
needs_kolektor = pytest.mark.skipif(not (REAL / "KolektorSDD").is_dir(), reason=f"real KolektorSDD not at {REAL}")
needs_magnetic = pytest.mark.skipif(not (REAL / "MagneticTile").is_dir(), reason=f"real MagneticTile not at {REAL}")


def interrupt_fold_once(monkeypatch, module, fold: int = 1) -> list[int]:
    """Make ``module._train_fold`` raise ``KeyboardInterrupt`` the first time it reaches ``fold``.

    ``_train_fold(cfg, data, current, **kw)`` gets the fold's :class:`FoldData` (``data.fold``
    is the test fold). Returns the list of folds it is called for, filled in as the cell runs:
    so a test can interrupt a grid cell halfway, run it again and check which folds trained
    again.
    """
    calls: list[int] = []
    original = module._train_fold

    def flaky(cfg, data, current, **kw):
        calls.append(data.fold)
        if data.fold == fold and calls.count(fold) == 1:
            raise KeyboardInterrupt  # an interruption halfway through the cell
        return original(cfg, data, current, **kw)

    monkeypatch.setattr(module, "_train_fold", flaky)
    return calls
