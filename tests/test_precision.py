"""Native-bfloat16 detection, the emulation warning, and the grids' ``amp`` override."""

from __future__ import annotations

import warnings

import pytest
import torch

from defectlib import precision
from defectlib.experiments.rec004 import Rec004GridConfig
from defectlib.experiments.seg000 import CPU_AMP, Seg000GridConfig
from defectlib.experiments.seg004 import Seg004GridConfig
from defectlib.results import device_info
from defectlib.training.two_stage import autocast


@pytest.fixture
def bf16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) bfloat16 instructions."""

    def pretend(native):
        monkeypatch.setattr(precision, "native_bfloat16", lambda device="cpu": native)
        precision.warn_if_emulated.cache_clear()

    yield pretend
    precision.warn_if_emulated.cache_clear()


def test_native_bfloat16_answers_for_the_cpu_and_not_for_other_devices():
    assert precision.native_bfloat16("cpu") in (True, False, None)
    assert precision.native_bfloat16("meta") is None
    capable = [getattr(torch.cpu, n)() for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
               if hasattr(torch.cpu, n)]
    if capable:
        assert precision.native_bfloat16("cpu") == any(capable)


def test_device_info_records_whether_bfloat16_is_native():
    assert device_info()["bf16_native"] == precision.native_bfloat16("cpu")


def test_autocast_warns_once_where_bfloat16_is_emulated(bf16):
    bf16(False)
    with pytest.warns(RuntimeWarning, match="amp=False"):
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


def test_the_grids_amp_parameter_overrides_the_profile_for_every_cell():
    default = Seg000GridConfig.from_profile("cpu").cells()
    assert {c.model: c.amp for c in default} == CPU_AMP
    assert not any(c.amp for c in Seg000GridConfig.from_profile("cpu", amp=False).cells())
    on = Seg000GridConfig.from_profile("cpu", models=["unet"], amp=True).cells()
    assert all(c.amp for c in on) and [c.dilation for c in on] == [0, 5, 9, 13, 15]
    for grid in (Rec004GridConfig, Seg004GridConfig):
        assert all(c.amp for c in grid.from_profile("cpu").cells())
        assert not any(c.amp for c in grid.from_profile("cpu", amp=False).cells())


def _record(amp: bool, step: float) -> dict:
    return {"device": {"cpu_model": "Some CPU", "cpu_count": 2, "bf16_native": False},
            "git": {"commit": "0123456789abcdef", "dirty": False},
            "rows": [{"model": "unet", "input": "352×128", "amp": amp, "train_step_s": step, "inference_s": 0.05}]}


def test_precision_by_machine_reads_bench_records_and_names_a_bad_one(tmp_path):
    import json

    from defectlib.errors import DefectlibError
    from defectlib.experiments.bench_chapter import precision_by_machine

    (tmp_path / "fp32.json").write_text(json.dumps(_record(False, 0.25)))
    (tmp_path / "amp.json").write_text(json.dumps(_record(True, 0.6)))
    table = precision_by_machine(tmp_path)
    assert sorted(table["arithmetic"]) == ["bfloat16 autocast", "float32"]
    assert table.set_index("arithmetic").loc["bfloat16 autocast", "training step (s)"] == 0.6
    assert set(table["machine"]) == {"Some CPU (2 CPUs)"} and set(table["commit"]) == {"0123456"}
    (tmp_path / "broken.json").write_text('{"device": {}}')
    with pytest.raises(DefectlibError, match="broken.json"):
        precision_by_machine(tmp_path)
