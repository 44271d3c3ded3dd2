"""The bench: figures come back complete and sane (no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from defectlib import cli
from defectlib.errors import ConfigError, UnavailableError
from defectlib.experiments.grid import study_cells
from defectlib.models import MODELS
from defectlib.models.seg000_proposed import MultiKernelBottleneck
from defectlib.perf import allocator, bench
from defectlib.perf.bench import bench_model, compile_unavailable_reason, matmul_peak, run_bench, study_sizes
from defectlib.perf.chapter import (
    STUDY_LEVERS,
    BenchConfig,
    LeversConfig,
    PerformanceConfig,
    bench_table,
    levers_table,
    run,
    run_levers,
)

TINY = {"train_repeats": 1, "infer_repeats": 1, "warmup": 1}


def test_matmul_peak_is_positive():
    assert matmul_peak(n=128, repeats=2) > 0


def test_study_sizes_are_every_network_at_the_sizes_its_cells_train_at():
    cells = study_cells("converged")
    sizes = study_sizes(cells)
    assert list(sizes) == list(MODELS)  # every network of the one registry, in its order
    assert {tuple(c.input_size) for c in cells if c.EXPERIMENT == "seg000" and c.model == "proposed"} \
        == set(sizes["seg000/proposed"])
    assert BenchConfig.from_profile("converged").sizes == {k: [list(s) for s in v] for k, v in sizes.items()}


def test_bench_model_reports_every_figure():
    row = bench_model("seg000/proposed", (64, 32), **TINY)
    assert row["model"] == "seg000/proposed" and row["experiment"] == "seg000" and row["input"] == "64×32"
    assert row["parameters"] == pytest.approx(1.12e6, rel=0.05)
    for key in ("gflops_per_image", "train_step_s", "inference_s", "images_per_s",
                "inference_flops_per_s", "train_flops_per_s"):
        assert row[key] > 0, key
    assert row["peak_memory_mb"] >= 0
    # the study's own settings: its layout, BatchNorm folded at inference, the in-place bottleneck
    assert row["channels_last"] is True and row["fuse_bn"] is True and row["bottleneck_inplace"] is True
    assert row["per_path_norm"] is False and row["compile"] is False and row["amp"] is False
    assert row["compile_inference_s"] is None and row["output_max_abs_diff"] < 1e-3


def test_levers_are_constructor_arguments_and_leave_no_process_state():
    row = bench_model("seg000/proposed", (64, 32), model_options={"inplace": False, "per_path_norm": True},
                      channels_last=False, fuse_bn=False, **TINY)
    assert row["bottleneck_inplace"] is False and row["per_path_norm"] is True
    assert row["channels_last"] is False and row["fuse_bn"] is False
    assert row["output_max_abs_diff"] == 0.0  # the same float32 arithmetic as the reference
    assert not hasattr(MultiKernelBottleneck, "inplace")  # nothing was switched for the process
    default = bench_model("seg000/proposed", (64, 32), **TINY)
    assert default["bottleneck_inplace"] is True and default["per_path_norm"] is False
    assert default["gflops_per_image"] == row["gflops_per_image"]  # FLOPs of the unfused network either way


def test_unknown_networks_and_bad_levers_are_refused_before_measuring(monkeypatch):
    with pytest.raises(ConfigError, match="nosuchnet"):
        bench_model("seg000/nosuchnet", (64, 32))
    with pytest.raises(ConfigError, match="nosuchnet"):
        run_bench(None, {"nosuchnet": [(64, 32)]})
    with pytest.raises(ConfigError, match="compile=True"):
        bench_model("seg000/proposed", (64, 32), freezing=True)
    with pytest.raises(ConfigError, match="threads"):
        run_bench(None, {"seg000/proposed": [(64, 32)]}, threads=0)
    monkeypatch.setitem(allocator._state, "policy", "retained")
    with pytest.raises(ConfigError, match="fresh process"):
        bench_model("seg000/proposed", (64, 32), retain_freed_memory=False)
    # no C++ compiler: a clear error, before anything is measured
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    assert "C++ compiler" in compile_unavailable_reason("cpu")
    with pytest.raises(UnavailableError, match="C\\+\\+ compiler"):
        run_bench(None, {"seg000/proposed": [(64, 32)]}, compile=True)
    assert cli.main(["bench", "seg000/proposed", "--size", "64x32", "--device", "cpu", "--compile",
                     "--out", "unused.json"]) == 2


def test_performance_config_passes_its_overrides_on():
    chapter = PerformanceConfig.from_profile("smoke", repeats=3)
    assert chapter.bench().repeats == chapter.levers().repeats == 3
    assert chapter.levers().levers[-1] == STUDY_LEVERS
    with pytest.raises(ConfigError, match="unknown network"):
        BenchConfig.from_profile("smoke", sizes={"resnet9000": [[64, 32]]})
    with pytest.raises(ConfigError, match="unknown or no lever sets"):
        LeversConfig.from_profile("smoke", levers=["warp drive"])


def test_amp_runs_in_bfloat16_and_reports_its_deviation():
    amp = bench_model("seg000/proposed", (64, 32), amp=True, **TINY)
    assert amp["amp"] is True and 0.0 < amp["output_max_abs_diff"] < 0.5  # bfloat16 keeps ~3 digits


@pytest.mark.slow  # four ResNet-50s
@pytest.mark.parametrize("name", ["rec004/dr", "rec004/resnet50", "seg004/deeplabv3plus", "seg004/improved"])
def test_seed_004_networks_are_measured_like_the_others(name):
    row = bench_model(name, (64, 64), train_repeats=1, infer_repeats=1, warmup=0)
    assert row["experiment"] == name.split("/")[0] and row["fuse_bn"] is True
    assert row["parameters"] > 20e6 and row["gflops_per_image"] > 0  # ResNet-50 backbones
    assert row["train_step_s"] > 0 and row["inference_s"] > 0
    assert row["output_max_abs_diff"] < 1e-3  # folding BatchNorm changes only the rounding


@pytest.mark.slow
def test_run_bench_measures_in_fresh_children_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    record = run_bench(out, {"seg000/proposed": [(64, 32)]}, progress=False, threads=1, **TINY)
    assert json.loads(out.read_text())["rows"] == record["rows"] and len(record["rows"]) == 1
    row = record["rows"][0]
    assert row["threads"] == 1 and record["machine"]["torch_threads"] == 1
    assert row["heap"] == "system"  # a fresh child, whatever this process does
    assert 0 < row["inference_fraction_of_peak"] and 0 < row["train_fraction_of_peak"]
    assert row["peak_memory_mb"] > 0 and record["matmul_peak_flops_per_s"] > 0 and "git" in record


@pytest.mark.slow
def test_cli_bench_prints_a_table_and_names_lever_runs_apart(isolated, capsys):
    assert cli.main(["bench", "seg000/proposed", "--size", "64x32", "--repeats", "1", "--threads", "1",
                     "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "matmul peak" in text and "seg000/proposed" in text and "64×32" in text
    assert "levers on: channels_last, fuse_bn" in text  # the proposed network's own layout + the fusion
    assert cli.main(["bench", "seg000/proposed", "--size", "64x32", "--repeats", "1", "--channels-last", "off",
                     "--fuse-bn", "off", "--per-path-norm", "on", "--threads", "1", "--device", "cpu"]) == 0
    assert "levers on: none" in capsys.readouterr().out
    written = sorted((isolated / "results" / "bench").glob("*.json"))
    assert [p.name for p in written] == ["cpu-channels-first-unfused-bn-threads1-per-path-norm-on.json",
                                         "cpu-threads1.json"]
    assert json.loads(written[0].read_text())["rows"][0]["per_path_norm"] is True
    with pytest.raises(SystemExit):
        cli.main(["bench", "--size", "64by32"])


@pytest.mark.slow
def test_compiled_bench_reports_compile_time_apart():
    reason = compile_unavailable_reason("cpu")
    if reason is not None:
        pytest.skip(reason)
    row = bench_model("seg000/proposed", (64, 32), compile=True, freezing=True, **TINY)
    assert row["compile"] and row["compile_inference_s"] > 0 and row["compile_train_s"] > 0


@pytest.mark.slow
def test_the_chapters_bench_runs_are_cached(isolated):
    chapter = PerformanceConfig.from_profile("smoke")
    first = run(chapter.bench(), progress=False)
    table = bench_table(first)
    assert list(table["network"]) == ["seg000/proposed"] and (table["inference (ms)"] > 0).all()
    assert run(chapter.bench(), progress=False).provenance["finished_utc"] == first.provenance["finished_utc"]
    levers = run_levers(chapter.levers(), progress=False)
    table = levers_table(levers.samples)
    assert list(table.index) == chapter.levers().levers
    assert (table["training step 64×32 (s)"] > 0).all() and table.loc[STUDY_LEVERS, "output max |Δ| 64×32"] < 1e-3
