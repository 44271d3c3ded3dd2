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


def _cell_record(folder, cfg, *, wall_s: float, f1: float, name: str = "run") -> None:
    import json

    run = folder / cfg.EXPERIMENT / name
    run.mkdir(parents=True)
    (run / "provenance.json").write_text(json.dumps({
        "config": cfg.to_dict(), "wall_time_s": wall_s,
        "device": {"cpu_model": "Some CPU", "cpu_count": 2, "bf16_native": False},
        "git": {"commit": "0123456789abcdef", "dirty": False}, "finished_utc": "2026-11-30T08:26:35+00:00"}))
    (run / "metrics.json").write_text(json.dumps({"f1": f1}))


def test_cells_by_machine_sets_a_record_beside_the_profiles_cell(isolated):
    import numpy as np

    from defectlib.experiments.bench_chapter import cells_by_machine
    from defectlib.experiments.budget import study_cells

    grid, label, cfg = study_cells("smoke")[0]
    folder = isolated / "other"
    # the same cell in the other arithmetic, and one of another profile (skipped)
    _cell_record(folder, cfg.model_copy(update={"amp": not cfg.amp}), wall_s=120.0, f1=0.5)
    other = study_cells("smoke")[1][2].model_copy(update={"profile": "cpu"})
    _cell_record(folder, other, wall_s=60.0, f1=0.1, name="other-profile")
    table = cells_by_machine("smoke", folder)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["grid"], row["cell"], row["machine"]) == (grid, label, "Some CPU (2 CPUs)")
    assert row["arithmetic"] == ("float32" if cfg.amp else "bfloat16")
    assert row["wall_min"] == 2.0 and row["f1"] == 0.5 and row["commit"] == "0123456"
    assert row["finished (UTC)"] == "2026-11-30 08:26"
    assert row["family"] == f"{cfg.EXPERIMENT} {cfg.model}"
    # the study's own run is not in the (isolated) results cache
    assert np.isnan(row["study wall_min"]) and np.isnan(row["ratio"])


def test_cells_by_machine_names_a_record_that_is_no_cell_or_no_run(isolated):
    from defectlib.errors import DefectlibError
    from defectlib.experiments.bench_chapter import cells_by_machine
    from defectlib.experiments.budget import study_cells

    cfg = study_cells("smoke")[0][2]
    folder = isolated / "other"
    _cell_record(folder, cfg.model_copy(update={"seed": 12345}), wall_s=1.0, f1=0.0, name="stray")
    with pytest.raises(DefectlibError, match=r"stray.provenance\.json: a 'smoke' run that is no cell"):
        cells_by_machine("smoke", folder)
    (folder / cfg.EXPERIMENT / "stray" / "provenance.json").write_text("{}")
    with pytest.raises(DefectlibError, match=r"stray.provenance\.json: not the provenance of a run"):
        cells_by_machine("smoke", folder)


def test_profile_on_machines_scales_each_cell_by_its_networks_median_ratio():
    import pandas as pd

    from defectlib.experiments.bench_chapter import profile_on_machines

    times = pd.DataFrame({"grid": ["g1", "g1", "g2", "g2"], "family": ["a", "a", "b", "c"],
                          "wall_min": [60.0, 60.0, 30.0, 30.0], "finished": [True, True, True, False]})
    cells = pd.DataFrame({"machine": ["m"] * 3, "family": ["a", "a", "b"], "ratio": [1.0, 3.0, 4.0]})
    out = profile_on_machines(times, cells).loc["m"]
    assert out.loc["g1", "projected_h"] == 4.0  # 2 h × median(1, 3)
    assert out.loc["g2", "cells"] == 1 and out.loc["g2", "projected_h"] == 2.0  # the unfinished cell is left out
    assert out.loc["total"].tolist() == [3, 3, 2, 2.5, 6.0]
    assert profile_on_machines(times, cells.iloc[:0]).empty


def test_bench_chapter_and_budget_doctests():
    import doctest

    from defectlib.experiments import bench_chapter, budget

    for module in (bench_chapter, budget):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def _notebook_record(folder, cfg, *, duration_s: float, wall_s: float, cpu: str = "Some CPU") -> None:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    run = {"config": cfg.to_dict(), "wall_time_s": wall_s, "device": {"cpu_model": cpu, "cpu_count": 2},
           "git": {"commit": "0123456789abcdef"}, "f1": 0.5}
    bench = {**run, "config": {"experiment": "bench", "profile": cfg.profile}, "wall_time_s": 30.0}
    (folder / f"{cpu}.json").write_text(json.dumps({
        "notebook": "nb.ipynb", "parameters": {"profile": cfg.profile}, "duration_s": duration_s,
        "cached_before": 0, "runs": [run, bench]}))


def test_notebooks_by_machine_sets_each_run_beside_its_estimate(isolated):
    import pandas as pd

    from defectlib.experiments.bench_chapter import notebook_totals, notebooks_by_machine
    from defectlib.experiments.budget import cell_family, study_cells

    grid, label, cfg = study_cells("smoke")[0]
    family = cell_family(cfg)
    folder = isolated / "notebooks"
    _notebook_record(folder, cfg.model_copy(update={"amp": False}), duration_s=1200.0, wall_s=600.0)
    times = pd.DataFrame({"grid": [grid], "cell": [label], "family": [family], "wall_min": [4.0]})
    cells = pd.DataFrame({"machine": ["Some CPU (2 CPUs)"] * 2, "family": [family] * 2, "ratio": [2.0, 3.0]})
    runs = notebooks_by_machine("smoke", folder, cells=cells, times=times)
    cell = runs[runs["cell"].notna()].iloc[0]
    assert (cell["grid"], cell["family"], cell["arithmetic"]) == (grid, family, "float32")
    assert cell["wall_min"] == 10.0 and cell["ratio"] == 2.5 and cell["projected_min"] == 10.0
    assert runs["cell"].isna().sum() == 1  # the benchmark run is no cell
    total = notebook_totals(runs).loc[("Some CPU (2 CPUs)", "nb.ipynb")]
    assert total["duration_min"] == 20.0 and total["runs"] == 2 and total["cells_min"] == 10.5
    assert total["outside_min"] == 9.5 and total["projected"] == 1 and total["measured/projected"] == 1.0
    # another profile's records are skipped; a broken record is named
    assert notebooks_by_machine("cpu", folder, cells=cells, times=times).empty
    (folder / "broken.json").write_text("[]")
    from defectlib.errors import DefectlibError

    with pytest.raises(DefectlibError, match=r"broken\.json: not a record of defectlib.book.notebook_run"):
        notebooks_by_machine("smoke", folder, cells=cells, times=times)


def test_checked_projection_rescales_the_estimate_by_the_whole_notebooks_on_that_machine():
    import math

    import pandas as pd

    from defectlib.experiments.bench_chapter import checked_projection

    index = pd.MultiIndex.from_tuples([("m", "g"), ("m", "total"), ("other", "g"), ("other", "total")],
                                      names=["machine", "grid"])
    projected = pd.DataFrame({"cells": [4, 4, 4, 4], "scaled": [4, 4, 4, 4], "projected_h": [5.0, 5.0, 3.0, 3.0]},
                             index=index)
    runs = pd.DataFrame({"machine": ["m", "m", "m", "m", "elsewhere"], "notebook": ["a", "a", "b", "b", "a"],
                         "duration_min": [40.0, 40.0, 21.0, 21.0, 9.0], "wall_min": [10.0, 20.0, 20.0, 0.5, 9.0],
                         "projected_min": [15.0, 25.0, 20.0, float("nan"), 9.0]})
    out = checked_projection(projected, runs)
    assert list(out.index) == ["m"]  # 'other' ran no notebook; 'elsewhere' is not in the projection
    row = out.loc["m"]
    assert row["checked"] == 3 and row["measured_min"] == 50.0 and row["estimated_min"] == 60.0
    assert math.isclose(row["measured/estimated"], 50 / 60) and math.isclose(row["corrected_h"], 5.0 * 50 / 60)
    assert row["outside_min"] == 10.0 + 0.5  # a: 40 - 30; b: 21 - 20.5 (the benchmark run is inside)
    assert checked_projection(projected, runs.iloc[:0]).empty
    # notebooks whose runs have no estimate: nothing to rescale by
    assert math.isnan(checked_projection(projected, runs.assign(projected_min=float("nan"))).loc["m", "corrected_h"])
