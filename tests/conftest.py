"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Results and cache in a temporary folder, so a test never touches the repository's."""
    monkeypatch.setenv("DEFECTLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("DEFECTLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path
