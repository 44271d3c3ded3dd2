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
