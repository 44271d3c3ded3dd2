"""Where things are: the project root, the data root, the results and the cache.

Every path resolves from the project root (the folder holding ``_toc.yml``), never from the
working directory, so a notebook executed from any folder finds the same files.

Environment variables
---------------------
DEFECTLIB_ROOT
    The project root (default: the folder above the installed ``defectlib`` package, or the
    first parent of the working directory that holds ``_toc.yml``).
DEFECTLIB_DATA
    The data root (default ``<root>/data``).
DEFECTLIB_RESULTS
    The results cache (default ``<root>/book/results``).
DEFECTLIB_CACHE
    Weights, checkpoints and generated synthetic data, never in git (default ``<root>/.cache``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DefectlibError

_MARKER = "_toc.yml"


def project_root() -> Path:
    """The project root: the folder that holds ``_toc.yml`` and ``defectlib/``."""
    env = os.environ.get("DEFECTLIB_ROOT")
    if env:
        root = Path(env).expanduser().resolve()
        if not (root / _MARKER).is_file():
            raise DefectlibError(f"DEFECTLIB_ROOT={env!s} has no {_MARKER}; it is not the project root.")
        return root
    here = Path(__file__).resolve().parent.parent
    if (here / _MARKER).is_file():
        return here
    for parent in [Path.cwd(), *Path.cwd().parents]:
        if (parent / _MARKER).is_file() and (parent / "defectlib").is_dir():
            return parent
    raise DefectlibError(
        "cannot find the project root (a folder with _toc.yml and defectlib/); "
        "install the package in editable mode (pip install -e .) or set DEFECTLIB_ROOT."
    )


def _from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    if not value:
        return default
    path = Path(value).expanduser()
    if not path.is_absolute():
        # Relative values are relative to the project root, not the working directory.
        path = project_root() / path
    return path.resolve()


def data_root() -> Path:
    """The data root: ``$DEFECTLIB_DATA`` or ``<root>/data``."""
    return _from_env("DEFECTLIB_DATA", project_root() / "data")


def results_root() -> Path:
    """The results cache: ``$DEFECTLIB_RESULTS`` or ``<root>/book/results``."""
    return _from_env("DEFECTLIB_RESULTS", project_root() / "book" / "results")


def cache_root() -> Path:
    """Weights, checkpoints and generated data: ``$DEFECTLIB_CACHE`` or ``<root>/.cache``."""
    return _from_env("DEFECTLIB_CACHE", project_root() / ".cache")
