"""The benchmark: figures come back complete and sane (no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from defectlib import cli
from defectlib.bench import BENCH_MODELS, bench_model, default_sizes, matmul_peak, run_bench
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
    sizes = default_sizes()["seg000"]
    assert (352, 128) in sizes and (1408, 512) in sizes and (704, 256) in sizes
    assert set(BENCH_MODELS) >= {"proposed", "deeplabv3plus", "unet"}


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
