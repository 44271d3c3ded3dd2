"""Every docstring example runs with the results cache and the data cache in a temporary
folder (``pytest --doctest-modules``), so an example never writes into the repository's.

The longest test runs first: ``make test`` runs two workers with ``--dist worksteal``, which
hands each worker a contiguous half of the collection and lets an idle one take from the
other's queue. Met late in a half, the longest test would leave the other worker idle at the
end; met first, it runs while the other worker takes the rest. The other tests keep their
order, so the other slow ones stay spread over both halves."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_doctest(request, tmp_path, monkeypatch):
    if type(request.node).__name__ == "DoctestItem":
        monkeypatch.setenv("DEFECTLIB_RESULTS", str(tmp_path / "results"))
        monkeypatch.setenv("DEFECTLIB_CACHE", str(tmp_path / "cache"))
    yield


def pytest_collection_modifyitems(items):
    """Tests marked ``longest`` first, the others after them in collection order."""
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)
