"""Every docstring example runs with the results cache and the data cache in a temporary
folder (``pytest --doctest-modules``), so an example never writes into the repository's."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_doctest(request, tmp_path, monkeypatch):
    if type(request.node).__name__ == "DoctestItem":
        monkeypatch.setenv("DEFECTLIB_RESULTS", str(tmp_path / "results"))
        monkeypatch.setenv("DEFECTLIB_CACHE", str(tmp_path / "cache"))
    yield
