"""The benchmark: figures come back complete and sane (no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from defectlib import cli
from defectlib.bench import (
    BENCH_MODELS,
    bench_model,
    compile_unavailable_reason,
    default_sizes,
    matmul_peak,
    run_bench,
)
from defectlib.experiments.bench_chapter import BenchConfig, bench_table, run


def test_matmul_peak_is_positive():
    assert matmul_peak(n=128, repeats=2) > 0


def test_bench_model_reports_every_figure():
    row = bench_model("proposed", (64, 32), train_repeats=1, infer_repeats=1, warmup=1)
    assert row["model"] == "proposed" and row["input"] == "64×32"
    assert row["parameters"] == pytest.approx(1.12e6, rel=0.05)
    for key in ("gflops_per_image", "train_step_s", "inference_s", "images_per_s",
                "inference_flops_per_s", "train_flops_per_s"):
        assert row[key] > 0, key
    assert row["peak_memory_mb"] >= 0
    # FLOPs scale with the number of pixels (a fully convolutional network)
    bigger = bench_model("proposed", (128, 64), train_repeats=1, infer_repeats=1, warmup=1)
    assert bigger["gflops_per_image"] / row["gflops_per_image"] == pytest.approx(4, rel=0.1)


def test_unknown_model_is_named():
    with pytest.raises(KeyError, match="nosuchnet"):
        bench_model("nosuchnet", (64, 32))
    with pytest.raises(KeyError, match="nosuchnet"):
        run_bench(None, models=["nosuchnet"])


def test_default_sizes_cover_every_profile():
    sizes = default_sizes()
    assert (352, 128) in sizes["seg000"] and (1408, 512) in sizes["seg000"] and (704, 256) in sizes["seg000"]
    assert sizes["rec004"] == [(224, 224)]
    assert {(256, 256), (352, 128), (384, 384), (1408, 512)} == set(sizes["seg004"])  # per dataset
    # every model of the study, each with the sizes of its experiment
    assert set(BENCH_MODELS) == {"proposed", "deeplabv3plus", "unet", "dr", "resnet50",
                                 "seg004-deeplabv3plus", "seg004-improved"}
    assert {m.experiment for m in BENCH_MODELS.values()} == set(sizes)


@pytest.mark.parametrize("name", ["dr", "resnet50", "seg004-deeplabv3plus", "seg004-improved"])
def test_seed_004_models_are_measured_like_the_others(name):
    row = bench_model(name, (64, 64), train_repeats=1, infer_repeats=1, warmup=0)
    assert row["experiment"] == BENCH_MODELS[name].experiment and row["fuse_bn"] is True
    assert row["parameters"] > 20e6 and row["gflops_per_image"] > 0  # ResNet-50 backbones
    assert row["train_step_s"] > 0 and row["inference_s"] > 0
    assert row["output_max_abs_diff"] < 1e-3  # folding BatchNorm changes only the rounding


def test_run_bench_writes_json_from_child_processes(tmp_path):
    out = tmp_path / "bench.json"
    record = run_bench(out, models=["proposed"], sizes={"seg000": [(64, 32)]}, progress=False,
                       train_repeats=1, infer_repeats=1, warmup=1)
    written = json.loads(out.read_text())
    assert written["rows"] == record["rows"] and len(record["rows"]) == 1
    row = record["rows"][0]
    assert 0 < row["inference_fraction_of_peak"] and 0 < row["train_fraction_of_peak"]
    assert row["peak_memory_mb"] > 0  # measured in a fresh process
    assert record["matmul_peak_flops_per_s"] > 0 and "git" in record


def test_bench_chapter_run_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFECTLIB_RESULTS", str(tmp_path / "results"))
    cfg = BenchConfig.from_profile("smoke")
    first = run(cfg, progress=False)
    table = bench_table(first)
    assert list(table["model"]) == ["proposed"] and (table["inference (ms)"] > 0).all()
    again = run(cfg, progress=False)  # read back, not measured again
    assert again.provenance["finished_utc"] == first.provenance["finished_utc"]
    with pytest.raises(ValueError, match="unknown model"):
        BenchConfig.from_profile("smoke", models=["resnet9000"])


def test_cli_bench_prints_a_table(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert cli.main(["bench", "proposed", "--size", "64x32", "--repeats", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "matmul peak" in text and "proposed" in text and "64×32" in text
    assert json.loads(out.read_text())["rows"][0]["height"] == 64
    with pytest.raises(SystemExit):
        cli.main(["bench", "--size", "64by32"])


# ------------------------------------------------------------------------------- speed levers


def test_rows_record_the_levers_and_defaults_are_the_models_own(monkeypatch):
    from defectlib.models.lightweight import MultiKernelBottleneck

    monkeypatch.setattr(MultiKernelBottleneck, "inplace", True)
    monkeypatch.setattr(MultiKernelBottleneck, "per_path_norm", False)
    row = bench_model("proposed", (64, 32), train_repeats=1, infer_repeats=1, warmup=1)
    assert row["channels_last"] is True  # the proposed network's own layout
    assert row["fuse_bn"] is True  # the study's inference path (BatchNorm folded)
    assert row["compile"] is False and row["per_path_norm"] is False
    assert row["freezing"] is False and row["compile_inference_s"] is None and row["compile_train_s"] is None
    assert row["bottleneck_inplace"] is True  # the class default (output-identical)
    levers = bench_model("proposed", (64, 32), train_repeats=1, infer_repeats=1, warmup=1,
                         channels_last=False, fuse_bn=False, bottleneck_inplace=False, per_path_norm=True)
    assert levers["channels_last"] is False and levers["fuse_bn"] is False and levers["bottleneck_inplace"] is False
    assert levers["per_path_norm"] is True
    assert levers["output_max_abs_diff"] < 1e-3  # the same function in the other layout, unfused
    assert levers["inference_s"] > 0 and levers["train_step_s"] > 0
    # FLOPs and parameters are the (unfused) network's, so rows stay comparable
    assert levers["gflops_per_image"] == row["gflops_per_image"] and levers["parameters"] == row["parameters"]


def test_bottleneck_inplace_setting_is_restored_by_the_caller(monkeypatch):
    from defectlib.models.lightweight import MultiKernelBottleneck

    monkeypatch.setattr(MultiKernelBottleneck, "inplace", True)
    bench_model("proposed", (64, 32), train_repeats=1, infer_repeats=1, warmup=1, bottleneck_inplace=False)
    assert MultiKernelBottleneck.inplace is False  # process-wide, as documented (run_bench uses children)


def test_run_bench_threads_reach_the_children(tmp_path):
    record = run_bench(None, models=["proposed"], sizes={"seg000": [(64, 32)]}, progress=False, threads=1,
                       fuse_bn=False, train_repeats=1, infer_repeats=1, warmup=1, retain_freed_memory=False)
    row = record["rows"][0]
    assert row["threads"] == 1 and row["fuse_bn"] is False and record["machine"]["torch_threads"] == 1
    assert row["heap"] == "system"  # a fresh child, even if this process retains its freed memory


def test_heap_lever_cannot_be_undone_in_one_process(monkeypatch):
    from defectlib import allocator
    from defectlib.errors import ConfigError

    monkeypatch.setitem(allocator._state, "policy", "retained")
    with pytest.raises(ConfigError, match="fresh process"):
        bench_model("proposed", (64, 32), retain_freed_memory=False)


def test_bad_lever_combinations_are_refused(monkeypatch):
    from defectlib import bench
    from defectlib.errors import ConfigError, UnavailableError

    with pytest.raises(ConfigError, match="compile=True"):
        bench_model("proposed", (64, 32), freezing=True)
    with pytest.raises(ConfigError, match="compile=True"):
        run_bench(None, models=["proposed"], freezing=True)
    with pytest.raises(ConfigError, match="threads"):
        run_bench(None, models=["proposed"], threads=0)
    # no C++ compiler: a clear error, before anything is measured
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    assert "C++ compiler" in bench.compile_unavailable_reason("cpu")
    with pytest.raises(UnavailableError, match="C\\+\\+ compiler"):
        bench_model("proposed", (64, 32), compile=True)
    with pytest.raises(UnavailableError, match="C\\+\\+ compiler"):
        run_bench(None, models=["proposed"], compile=True)
    assert cli.main(["bench", "proposed", "--size", "64x32", "--compile", "--out", "unused.json"]) == 2


@pytest.mark.slow
def test_compiled_bench_reports_compile_time_apart():
    reason = compile_unavailable_reason("cpu")
    if reason is not None:
        pytest.skip(reason)
    row = bench_model("proposed", (64, 32), train_repeats=1, infer_repeats=1, warmup=1, compile=True,
                      fuse_bn=True, channels_last=True)
    assert row["compile"] and row["compile_inference_s"] > 0 and row["compile_train_s"] > 0
    assert row["inference_s"] > 0 and row["train_step_s"] > 0


def test_cli_bench_names_lever_runs_apart(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEFECTLIB_RESULTS", str(tmp_path / "results"))
    assert cli.main(["bench", "proposed", "--size", "64x32", "--repeats", "1", "--threads", "1",
                     "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "levers on: channels_last, fuse_bn" in text  # the proposed net's own layout + the study's fusion
    assert cli.main(["bench", "proposed", "--size", "64x32", "--repeats", "1", "--channels-last", "off",
                     "--fuse-bn", "off", "--per-path-norm", "on", "--threads", "1", "--device", "cpu"]) == 0
    assert "levers on: none" in capsys.readouterr().out
    written = sorted((tmp_path / "results" / "bench").glob("*.json"))
    assert [p.name for p in written] == ["cpu-channels-first-unfused-bn-threads1-per-path-norm-on.json",
                                         "cpu-threads1.json"]
    assert json.loads(written[1].read_text())["rows"][0]["fuse_bn"] is True
    assert json.loads(written[0].read_text())["rows"][0]["fuse_bn"] is False
    assert json.loads(written[0].read_text())["rows"][0]["per_path_norm"] is True


def test_amp_runs_in_bfloat16_and_reports_its_deviation():
    plain = bench_model("proposed", (64, 32), train_repeats=1, infer_repeats=1, warmup=1, fuse_bn=False)
    fused = bench_model("proposed", (64, 32), train_repeats=1, infer_repeats=1, warmup=1)
    amp = bench_model("proposed", (64, 32), train_repeats=1, infer_repeats=1, warmup=1, amp=True)
    assert plain["amp"] is False and amp["amp"] is True
    # float32 levers that do not change the arithmetic give the plain output exactly
    assert plain["output_max_abs_diff"] == 0.0
    # folding BatchNorm changes only the rounding
    assert 0.0 <= fused["output_max_abs_diff"] < 1e-4
    # bfloat16 keeps ~3 significant digits: a small but non-zero deviation
    assert 0.0 < amp["output_max_abs_diff"] < 0.5


def test_levers_chapter_measures_every_lever_set_and_caches(tmp_path, monkeypatch):
    from defectlib.experiments.bench_chapter import DEFAULT_LEVERS, LeversConfig, levers_table, run_levers

    monkeypatch.setenv("DEFECTLIB_RESULTS", str(tmp_path / "results"))
    cfg = LeversConfig.from_profile("smoke")
    first = run_levers(cfg, progress=False)
    table = levers_table(first)
    assert list(table.index) == ["plain", DEFAULT_LEVERS]
    assert (table["inference 64×32 (ms)"] > 0).all() and (table["training step 64×32 (s)"] > 0).all()
    assert table.loc[DEFAULT_LEVERS, "output max |Δ| 64×32"] < 1e-3
    again = run_levers(cfg, progress=False)
    assert again.provenance["finished_utc"] == first.provenance["finished_utc"]
    with pytest.raises(ValueError, match="unknown or no lever sets"):
        LeversConfig.from_profile("smoke", levers=["warp drive"])
