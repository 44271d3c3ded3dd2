"""The budget checks (what the cpu profile's cuts cost) and ``test_folds``, on synthetic data."""

from __future__ import annotations

import pytest

import defectlib.allocator
from defectlib.errors import ConfigError
from defectlib.experiments import budget, seg000
from defectlib.experiments.budget import CPU_CHECKS, BudgetCheck, checks_for, budget_table, recorded_times, run_checks
from defectlib.experiments.seg000 import Seg000Config


def test_test_folds_is_left_out_of_the_run_key_until_set():
    cfg = Seg000Config.from_profile("cpu", model="proposed", dilation=0)
    assert "test_folds" not in cfg.to_dict() and cfg.fold_numbers() == [0, 1, 2]
    one = Seg000Config.from_profile("cpu", model="proposed", dilation=0, test_folds=[1])
    assert one.to_dict()["test_folds"] == [1] and one.fold_numbers() == [1]
    assert one.digest() != cfg.digest()


@pytest.mark.parametrize("bad", [[3], [], [0, 0], [-1]])
def test_test_folds_must_name_distinct_existing_folds(bad):
    with pytest.raises(ConfigError, match="test_folds"):
        Seg000Config.from_profile("cpu", model="proposed", dilation=0, test_folds=bad)


def test_the_cpu_checks_restore_budget_on_cells_of_the_grids():
    assert checks_for("cpu") == CPU_CHECKS and checks_for("paper") == () and checks_for("smoke")
    assert {c.experiment for c in CPU_CHECKS} == set(budget.EXPERIMENTS)
    for check in CPU_CHECKS:
        base, restored = check.configs("cpu", fold=0)
        assert base.test_folds is None and restored.test_folds == [0]
        changed = {k for k, v in restored.to_dict().items() if base.to_dict().get(k) != v}
        assert changed == set(check.restore) | {"test_folds"}, check.label
        assert base.digest() in {c.digest() for c in budget.EXPERIMENTS[check.experiment][0].grid_configs("cpu")}


def test_amp_sets_the_arithmetic_of_every_check_and_cell_and_nothing_else():
    for check in CPU_CHECKS:
        for amp in (False, True):
            pair = check.configs("cpu", fold=0, amp=amp)
            assert all(cfg.amp is amp for cfg in pair), check.label
            as_profile = check.configs("cpu", fold=0)
            assert [c.model_copy(update={"amp": a.amp}) for c, a in zip(pair, as_profile)] == list(as_profile)
    cells, float32 = budget.study_cells("cpu"), budget.study_cells("cpu", amp=False)
    assert any(cfg.amp for _, _, cfg in cells) and not any(cfg.amp for _, _, cfg in float32)
    assert [(g, label) for g, label, _ in cells] == [(g, label) for g, label, _ in float32]


def test_run_checks_compares_one_fold_of_the_cell_with_the_restored_run(isolated):
    check = BudgetCheck("more steps", "seg000", {"model": "proposed", "dilation": 0},
                        {"seg_steps": 40, "clf_steps": 30}, ("ap", "f1"))
    rows = run_checks("smoke", [check], fold=1, progress=False)
    assert list(rows["budget"]) == ["profile", "restored"] and set(rows["fold"]) == {1}
    assert rows["setting"].iloc[0] != rows["setting"].iloc[1]
    # the profile's row is the full cell's fold 1, recomputed from its samples
    full = seg000.run(Seg000Config.from_profile("smoke", model="proposed", dilation=0), progress=False)
    assert rows["ap"].iloc[0] == pytest.approx(full.metrics["per_fold"]["1"]["ap"])
    # the restored run trained and tested fold 1 only
    restored = seg000.run(check.configs("smoke", fold=1)[1], progress=False)
    assert set(restored.samples["fold"]) == {1}
    table = budget_table(rows)
    assert set(table.index.get_level_values("metric")) >= {"ap", "f1", "wall_min"}
    assert table["change"].tolist() == pytest.approx((table["restored"] - table["profile"]).tolist())
    times = recorded_times("smoke", [check], fold=1)
    assert times.loc[times["grid"] == "budget checks", "finished"].all()
    assert times["finished"].sum() == 2  # the check, and the one grid cell it compared with
    assert set(times.loc[times["finished"], "heap"]) == {defectlib.allocator.heap_policy()}
    # the other arithmetic is other cells: none of them is cached
    other = not check.configs("smoke", fold=1)[0].amp
    assert not recorded_times("smoke", [check], fold=1, amp=other)["finished"].any()


def test_precision_cost_sets_each_bfloat16_cell_beside_its_float32_run(isolated):
    cell = Seg000Config.from_profile("smoke", model="proposed", dilation=0, amp=True)
    assert budget.precision_cost("smoke").empty  # the smoke profile trains nothing in bfloat16
    missing = budget.precision_cost("smoke", cells=[cell])
    assert list(missing["arithmetic"]) == ["float32", "bfloat16"] and not missing["finished"].any()
    seg000.run(cell, progress=False)
    seg000.run(cell.model_copy(update={"amp": False}), progress=False)
    table = budget.precision_cost("smoke", cells=[cell])
    assert table["finished"].all() and (table["wall_min"] > 0).all()
    assert table.set_index("arithmetic").loc["bfloat16", "f1"] == pytest.approx(
        seg000.run(cell, progress=False).metrics["f1"], nan_ok=True)


def test_recorded_names_the_heap_policy_and_reads_older_runs_as_the_system_heap():
    from types import SimpleNamespace

    def run(**extra):
        return SimpleNamespace(provenance={"wall_time_s": 90.0, "git": {"commit": "0123456789ab"}, **extra})

    missing = budget.recorded(None)
    assert missing["wall_min"] != missing["wall_min"] and not missing["finished"]  # NaN: not run
    assert missing["commit"] == missing["heap"] == ""
    assert budget.recorded(run(heap="retained")) == {"wall_min": 1.5, "finished": True,
                                                     "commit": "0123456", "heap": "retained"}
    # runs from before the field existed trained with the C library's defaults
    assert budget.recorded(run())["heap"] == "system"
