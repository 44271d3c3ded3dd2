"""defectlib.perf.precision: native-bfloat16 detection and the warning where it is emulated."""

from __future__ import annotations

import warnings

import pytest
import torch

from defectlib.perf import precision
from defectlib.perf.precision import autocast


@pytest.fixture
def bf16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) bfloat16 instructions."""

    def pretend(native):
        monkeypatch.setattr(precision, "native_bfloat16", lambda device="cpu": native)
        precision.warn_if_emulated.cache_clear()

    yield pretend
    precision.warn_if_emulated.cache_clear()


def test_native_bfloat16_follows_torchs_cpu_probes():
    capable = [getattr(torch.cpu, n)() for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
               if hasattr(torch.cpu, n)]
    assert precision.native_bfloat16("cpu") == (any(capable) if capable else None)


def test_autocast_warns_once_where_bfloat16_is_emulated(bf16):
    bf16(False)
    with pytest.warns(RuntimeWarning, match="emulated"):
        with autocast("cpu", True):
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with autocast("cpu", True):  # once per process and device type
            pass


@pytest.mark.parametrize("native, enabled", [(True, True), (False, False), (None, True)])
def test_autocast_is_silent_where_bfloat16_is_native_off_or_unknown(bf16, native, enabled):
    bf16(native)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with autocast("cpu", enabled):
            y = torch.nn.Linear(2, 2)(torch.ones(1, 2))
    assert y.dtype == (torch.bfloat16 if enabled else torch.float32)
