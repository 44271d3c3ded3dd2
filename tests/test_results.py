"""Tests for defectlib.results and defectlib.atomic: run keys, complete runs and their
provenance, resuming an interrupted run, atomic writes, and the doctests."""

import doctest
import json
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

import defectlib.atomic
import defectlib.results
from defectlib import atomic
from defectlib.config import ExperimentConfig
from defectlib.data.folds import FoldsManifest
from defectlib.experiments.data_chapter import DataConfig
from defectlib.results import PROVENANCE, Run, RunResult, run_key

SHA_A = "a" * 64
SHA_B = "b" * 64
MANIFESTS = {"kolektorsdd": SHA_A, "magnetictile": SHA_B}


class ToyConfig(ExperimentConfig):
    EXPERIMENT: ClassVar[str] = "toy"
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"epochs": 1, "size": [8, 8]},
        "converged": {"epochs": 3, "size": [32, 32]},
        "paper": {"epochs": 50, "size": [512, 512]},
    }

    epochs: int = 1
    lr: float = 0.1
    backbone: str = "tiny"
    size: list[int] = [8, 8]


def fold_table(fold: int, n: int = 4) -> pd.DataFrame:
    """Per-sample outputs of one fold; sample ids with leading zeros (must stay strings)."""
    rng = np.random.default_rng(fold)
    return pd.DataFrame(
        {
            "sample_id": [f"{fold:02d}{i:03d}" for i in range(n)],
            "fold": fold,
            "label": [i % 2 for i in range(n)],
            "score": rng.random(n).round(6),
        }
    )


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# -- run_key --------------------------------------------------------------------------------


def test_run_key_deterministic_and_profile_prefixed():
    cfg = ToyConfig.from_profile("converged")
    key = run_key(cfg, MANIFESTS)
    assert key == run_key(cfg, MANIFESTS)
    prefix, digest = key.split("-")
    assert prefix == "converged"
    assert len(digest) == 12 and int(digest, 16) >= 0
    assert run_key(ToyConfig.from_profile("paper"), MANIFESTS).startswith("paper-")


def test_run_key_equal_for_equal_inputs_built_differently():
    a = run_key(ToyConfig.from_profile("converged", lr=0.1), dict(MANIFESTS))
    b = run_key(
        ToyConfig(profile="converged", epochs=3, lr=0.1, backbone="tiny", size=[32, 32], seed=0),
        {"magnetictile": SHA_B, "kolektorsdd": SHA_A},  # other insertion order
    )
    assert a == b


def test_run_key_changes_with_every_config_field():
    base = ToyConfig.from_profile("converged")
    changed = {
        "profile": ToyConfig(**{**base.model_dump(), "profile": "paper"}),
        "seed": ToyConfig.from_profile("converged", seed=1),
        "epochs": ToyConfig.from_profile("converged", epochs=4),
        "lr": ToyConfig.from_profile("converged", lr=0.2),
        "backbone": ToyConfig.from_profile("converged", backbone="big"),
        "size": ToyConfig.from_profile("converged", size=[32, 33]),
    }
    assert set(changed) == set(ToyConfig.model_fields)
    keys = {name: run_key(cfg, MANIFESTS) for name, cfg in changed.items()}
    keys["base"] = run_key(base, MANIFESTS)
    assert len(set(keys.values())) == len(keys), keys


def test_run_key_changes_with_experiment_name():
    class Other(ToyConfig):
        EXPERIMENT: ClassVar[str] = "other"

    assert run_key(Other.from_profile("converged"), MANIFESTS) != run_key(ToyConfig.from_profile("converged"), MANIFESTS)


def test_run_key_changes_with_manifests():
    cfg = ToyConfig.from_profile("converged")
    base = run_key(cfg, MANIFESTS)
    assert run_key(cfg, {**MANIFESTS, "kolektorsdd": "c" * 64}) != base
    assert run_key(cfg, {**MANIFESTS, "magnetictile": SHA_A}) != base
    assert run_key(cfg, {"kolektorsdd": SHA_A}) != base
    assert run_key(cfg, {**MANIFESTS, "synthetic": SHA_A}) != base
    assert run_key(cfg, {"kolektorsdd": SHA_B, "magnetictile": SHA_A}) != base
    assert run_key(cfg, {}) != base


def test_run_key_same_for_manifest_object_and_its_sha():
    manifest = FoldsManifest(
        path=Path("/somewhere/kolektorsdd-k3-seed0-0123456789ab.csv"),
        sha256=SHA_A,
        table=pd.DataFrame({"sample_id": ["a"], "fold": [0]}),
        data_checksum="d" * 64,
        n_folds=3,
        seed=0,
    )
    cfg = ToyConfig.from_profile("smoke")
    assert run_key(cfg, {"kolektorsdd": manifest}) == run_key(cfg, {"kolektorsdd": SHA_A})
    run = Run(cfg, {"kolektorsdd": manifest}, root="/nonexistent")
    assert run.manifests["kolektorsdd"] == {
        "file": "kolektorsdd-k3-seed0-0123456789ab.csv",
        "sha256": SHA_A,
        "data_checksum": "d" * 64,
        "n_folds": 3,
        "seed": 0,
    }


def test_run_key_independent_of_process_and_hash_seed():
    cfg = DataConfig.from_profile("converged", seed=3)
    code = (
        "from defectlib.experiments.data_chapter import DataConfig;"
        "from defectlib.results import run_key;"
        f"print(run_key(DataConfig.from_profile('converged', seed=3), {MANIFESTS!r}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == run_key(cfg, MANIFESTS)


def test_run_path_is_experiment_and_key(tmp_path):
    cfg = ToyConfig.from_profile("smoke")
    run = Run(cfg, MANIFESTS, root=tmp_path)
    assert run.key == run_key(cfg, MANIFESTS)
    assert run.path == tmp_path / "toy" / run.key
    assert not run.path.exists()  # nothing is written before something is saved


def test_run_needs_an_experiment_name(tmp_path):
    class Nameless(ExperimentConfig):
        pass

    with pytest.raises(ValueError, match="Nameless sets no EXPERIMENT"):
        Run(Nameless(profile="smoke"), MANIFESTS, root=tmp_path)


# -- a complete run --------------------------------------------------------------------------


@pytest.fixture
def finished(tmp_path):
    cfg = ToyConfig.from_profile("smoke", seed=7)
    run = Run(cfg, MANIFESTS, root=tmp_path)
    samples = pd.concat([fold_table(0), fold_table(1)], ignore_index=True)
    metrics = {"f1": 0.75, "per_fold": {"0": {"ap": 0.5}, "1": {"ap": 1.0}}, "n": 8}
    run.save_artifact("example", image=np.arange(12, dtype=np.uint8).reshape(3, 4), masks=np.eye(3, dtype=bool))
    result = run.finish(samples, metrics, extra={"note": "hello"})
    return run, cfg, samples, metrics, result


def test_finish_writes_the_three_files(finished):
    run, *_ = finished
    assert run.complete
    assert {"samples.csv", "metrics.json", PROVENANCE, "artifacts"} <= files_in(run.path)
    assert not any(name.endswith(".tmp") for name in files_in(run.path))


def test_finish_returns_what_load_reads(finished):
    run, cfg, samples, metrics, result = finished
    assert isinstance(result, RunResult)
    assert result.key == run.key and result.path == run.path
    loaded = Run(cfg, MANIFESTS, root=run.path.parent.parent).load()
    pd.testing.assert_frame_equal(loaded.samples, samples)
    pd.testing.assert_frame_equal(result.samples, samples)
    assert loaded.samples["sample_id"].tolist()[:2] == ["00000", "00001"]  # leading zeros kept
    assert loaded.metrics == metrics == result.metrics
    assert loaded.provenance == result.provenance


def test_provenance_contents(finished):
    run, cfg, _, _, result = finished
    prov = json.loads((run.path / PROVENANCE).read_text())
    assert prov == result.provenance
    assert prov["experiment"] == "toy"
    assert prov["run_key"] == run.key
    assert prov["config"] == cfg.to_dict()
    assert prov["config"]["seed"] == 7 and prov["config"]["experiment"] == "toy"
    assert prov["folds_manifests"] == {"kolektorsdd": {"sha256": SHA_A}, "magnetictile": {"sha256": SHA_B}}
    assert "commit" in prov["git"] and "dirty" in prov["git"]
    assert isinstance(prov["git"]["commit"], str) and prov["git"]["commit"]
    import numpy
    import torch

    # The installed distribution's version; torch.__version__ may add a local tag (+cu130).
    assert prov["packages"]["torch"] == metadata.version("torch")
    assert torch.__version__.split("+")[0] == prov["packages"]["torch"]
    assert prov["packages"]["numpy"] == numpy.__version__
    assert prov["packages"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert {"platform", "cpu_count", "torch_threads", "cuda", "hostname"} <= set(prov["device"])
    assert prov["device"]["hostname"] == platform.node()
    assert "bf16_native" not in prov["device"]  # no bfloat16 anywhere any more
    assert prov["wall_time_s"] == 0  # no parts: no computation
    assert "started_utc" not in prov and prov["finished_utc"].endswith("+00:00")
    assert prov["parts"] == {}
    assert prov["note"] == "hello"


def test_git_commit_matches_checkout(finished):
    _, _, _, _, result = finished
    root = Path(defectlib.results.__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    assert result.provenance["git"]["commit"] == head


def test_artifacts_round_trip(finished):
    run, cfg, *_ = finished
    arrays = Run(cfg, MANIFESTS, root=run.path.parent.parent).load().artifact("example")
    assert set(arrays) == {"image", "masks"}
    np.testing.assert_array_equal(arrays["image"], np.arange(12, dtype=np.uint8).reshape(3, 4))
    assert arrays["image"].dtype == np.uint8
    np.testing.assert_array_equal(arrays["masks"], np.eye(3, dtype=bool))
    assert arrays["masks"].dtype == bool
    with pytest.raises(FileNotFoundError):
        run.load().artifact("missing")


def test_other_config_is_another_run(finished):
    run, cfg, *_ = finished
    root = run.path.parent.parent
    assert Run(cfg, MANIFESTS, root=root).complete
    assert not Run(ToyConfig.from_profile("smoke", seed=8), MANIFESTS, root=root).complete
    assert not Run(cfg, {**MANIFESTS, "kolektorsdd": "c" * 64}, root=root).complete


def test_load_of_incomplete_run_fails(tmp_path):
    run = Run(ToyConfig.from_profile("smoke"), MANIFESTS, root=tmp_path)
    with pytest.raises(FileNotFoundError, match="not complete"):
        run.load()
    run.save_part("fold0", fold_table(0), seconds=1.0)
    assert not run.complete
    with pytest.raises(FileNotFoundError):
        run.load()


def test_git_state_is_recorded_when_the_run_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(defectlib.results, "git_state", lambda root=None: {"commit": "at-start", "dirty": False})
    run = Run(ToyConfig.from_profile("smoke"), MANIFESTS, root=tmp_path)
    monkeypatch.setattr(defectlib.results, "git_state", lambda root=None: {"commit": "later", "dirty": True})
    assert run.finish(fold_table(0), {"f1": 1.0}).provenance["git"] == {"commit": "at-start", "dirty": False}


def test_failure_while_finishing_leaves_run_incomplete(tmp_path, monkeypatch):
    run = Run(ToyConfig.from_profile("smoke"), MANIFESTS, root=tmp_path)

    def broken_versions():
        raise RuntimeError("metadata exploded")

    # (git_state is read when the run starts; package versions while it finishes)
    monkeypatch.setattr(defectlib.results, "package_versions", broken_versions)
    with pytest.raises(RuntimeError, match="metadata exploded"):
        run.finish(fold_table(0), {"f1": 1.0})
    assert not run.complete
    assert PROVENANCE not in files_in(run.path)


# -- resuming an interrupted run -------------------------------------------------------------


def experiment(cfg, root, compute):
    """A fake experiment loop over 3 folds, resumable fold by fold like the real ones."""
    run = Run(cfg, MANIFESTS, root=root)
    if run.complete:
        return run.load()
    for fold in range(3):
        name = f"fold{fold}"
        if run.has_part(name):
            continue
        table, seconds = compute(fold)
        run.save_part(name, table, seconds=seconds, checks={"constant_output": fold == 2})
    samples = run.load_parts()
    return run.finish(samples, {"n": len(samples), "mean_score": samples["score"].mean()})


def test_interrupted_run_resumes_where_it_stopped(tmp_path):
    cfg = ToyConfig.from_profile("converged", seed=1)
    calls = []
    attempt = {"n": 1}

    def compute(fold):
        calls.append((attempt["n"], fold))
        if attempt["n"] == 1 and fold == 1:
            raise KeyboardInterrupt("interrupted in fold 1")
        return fold_table(fold), 10.0  # every fold takes 10 s of computation

    with pytest.raises(KeyboardInterrupt):
        experiment(cfg, tmp_path, compute)
    run = Run(cfg, MANIFESTS, root=tmp_path)
    assert calls == [(1, 0), (1, 1)]
    assert not run.complete
    assert run.has_part("fold0") and not run.has_part("fold1") and not run.has_part("fold2")
    assert not (run.path / PROVENANCE).exists()
    assert not (run.path / "samples.csv").exists() and not (run.path / "metrics.json").exists()
    pd.testing.assert_frame_equal(run.load_part("fold0"), fold_table(0))
    info = json.loads((run.path / "parts" / "fold0.json").read_text())
    assert info["wall_time_s"] == 10.0 and info["checks"] == {"constant_output": False}
    assert info["git"] == run._git and info["device"]["hostname"] == platform.node()
    assert info["finished_utc"].endswith("+00:00")
    assert run.part_info() == {"fold0": info}

    attempt["n"] = 2
    result = experiment(cfg, tmp_path, compute)
    assert calls == [(1, 0), (1, 1), (2, 1), (2, 2)]  # fold0 skipped on the second attempt
    assert run.complete
    samples = result.samples
    assert sorted(samples["fold"].unique()) == [0, 1, 2]
    assert samples["sample_id"].is_unique
    assert samples.groupby("fold").size().tolist() == [4, 4, 4]
    expected = pd.concat([fold_table(f) for f in range(3)], ignore_index=True)
    pd.testing.assert_frame_equal(samples.sort_values("sample_id", ignore_index=True), expected)
    assert result.metrics["n"] == 12
    # Wall time: the saved parts' seconds of computation (the interrupted try of fold 1 is lost).
    assert result.provenance["wall_time_s"] == pytest.approx(30.0)
    parts = result.provenance["parts"]
    assert sorted(parts) == ["fold0", "fold1", "fold2"]
    assert all(p["wall_time_s"] == 10.0 and p["commit"] == run._git["commit"] and p["finished_utc"]
               for p in parts.values())
    assert run.part_checks() == {"fold0": {"constant_output": False}, "fold1": {"constant_output": False},
                                 "fold2": {"constant_output": True}}

    # A third attempt finds the run complete and computes nothing.
    attempt["n"] = 3
    again = experiment(cfg, tmp_path, compute)
    assert calls == [(1, 0), (1, 1), (2, 1), (2, 2)]
    pd.testing.assert_frame_equal(again.samples, samples)


def test_wall_time_is_the_sum_of_the_parts_seconds(tmp_path):
    """The seconds a part took are what its trainer measured (resumes included), not the time
    between saves: two workers saving parts of one run would otherwise count each other's time."""
    run = Run(ToyConfig.from_profile("smoke"), MANIFESTS, root=tmp_path)
    run.save_part("a", fold_table(0), seconds=2.0)
    run.save_part("b", fold_table(1), seconds=3.5004)
    assert {name: info["wall_time_s"] for name, info in run.part_info().items()} == {"a": 2.0, "b": 3.5}
    assert run.part_checks() == {"a": {}, "b": {}}
    result = Run(ToyConfig.from_profile("smoke"), MANIFESTS, root=tmp_path).finish(run.load_parts(), {})
    assert result.provenance["wall_time_s"] == pytest.approx(5.5)
    with pytest.raises(TypeError):
        run.save_part("c", fold_table(2))  # the seconds are required


def test_provenance_table_gives_the_parts_time_and_says_when_there_is_none(tmp_path, finished):
    *_, whole = finished  # saved whole: no parts, so no time was recorded
    assert defectlib.results.provenance_table(whole).loc["wall time (s)", "value"] == "not recorded"
    run = Run(ToyConfig.from_profile("smoke"), MANIFESTS, root=tmp_path / "parts")
    run.save_part("a", fold_table(0), seconds=2.5)
    table = defectlib.results.provenance_table(run.finish(run.load_parts(), {}))
    assert table.loc["wall time (s)", "value"] == "2.5"


def test_part_info_ignores_a_record_without_its_table(tmp_path):
    run = Run(ToyConfig.from_profile("smoke"), MANIFESTS, root=tmp_path)
    assert run.part_info() == {} and run.part_checks() == {}
    run.save_part("fold0", fold_table(0), seconds=1.0, checks={"val_ap": 0.5})
    (run.path / "parts" / "fold1.json").write_text('{"wall_time_s": 99.0}')  # killed before its table
    assert list(run.part_info()) == ["fold0"] and run.part_checks() == {"fold0": {"val_ap": 0.5}}
    assert run.finish(run.load_parts(), {}).provenance["wall_time_s"] == 1.0


def test_save_part_overwrites_and_load_parts_concatenates(tmp_path):
    run = Run(ToyConfig.from_profile("smoke"), MANIFESTS, root=tmp_path)
    run.save_part("fold1", fold_table(1), seconds=1.0)
    run.save_part("fold0", fold_table(9), seconds=1.0)
    run.save_part("fold0", fold_table(0), seconds=2.0)
    assert sorted(files_in(run.path / "parts")) == ["fold0.csv", "fold0.json", "fold1.csv", "fold1.json"]
    pd.testing.assert_frame_equal(
        run.load_parts(), pd.concat([fold_table(0), fold_table(1)], ignore_index=True)
    )


# -- atomic writes -------------------------------------------------------------------------


def test_atomic_write_creates_parents_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "x.json"
    atomic.write_json(target, {"b": 1, "a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    assert files_in(target.parent) == {"x.json"}
    assert target.read_text().index('"a"') < target.read_text().index('"b"')  # sorted keys


@pytest.mark.parametrize("existing", [False, True])
def test_failed_replace_leaves_target_and_no_temp(tmp_path, monkeypatch, existing):
    target = tmp_path / "metrics.json"
    if existing:
        atomic.write_json(target, {"old": 1})
    before = target.read_bytes() if existing else None

    def failing_replace(src, dst):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(defectlib.atomic.os, "replace", failing_replace)
        with pytest.raises(OSError, match="disk full"):
            atomic.write_json(target, {"new": 2})
        with pytest.raises(OSError, match="disk full"):
            atomic.write_csv(tmp_path / "samples.csv", fold_table(0))
        with pytest.raises(OSError, match="disk full"):
            atomic.write_npz(tmp_path / "a.npz", x=np.zeros(3))
    assert files_in(tmp_path) == ({"metrics.json"} if existing else set())
    if existing:
        assert target.read_bytes() == before


def test_writer_raising_midway_leaves_target_and_no_temp(tmp_path):
    target = tmp_path / "samples.csv"
    atomic.write_csv(target, fold_table(0))
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="midway"):
        with atomic.atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            tmp.write_text("sample_id,fold\nhalf")
            raise RuntimeError("midway")
    assert target.read_bytes() == before
    assert files_in(tmp_path) == {"samples.csv"}


def test_to_csv_raising_leaves_target_and_no_temp(tmp_path):
    class BadFrame(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            raise RuntimeError("cannot render")

    target = tmp_path / "samples.csv"
    atomic.write_csv(target, fold_table(0))
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="cannot render"):
        atomic.write_csv(target, BadFrame({"a": [1]}))
    with pytest.raises(RuntimeError, match="cannot render"):
        atomic.write_csv(tmp_path / "new.csv", BadFrame({"a": [1]}))
    assert target.read_bytes() == before
    assert files_in(tmp_path) == {"samples.csv"}


def test_unserialisable_json_leaves_target_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.write_json(target, {"f1": 0.5})
    before = target.read_bytes()
    with pytest.raises(TypeError, match="not JSON-serialisable: object"):
        atomic.write_json(target, {"f1": object()})
    assert target.read_bytes() == before
    assert files_in(tmp_path) == {"metrics.json"}


def test_npz_writer_raising_midway_leaves_target_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "a.npz"
    atomic.write_npz(target, x=np.arange(3))

    def half_save(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError("interrupted")

    monkeypatch.setattr(defectlib.atomic.np, "savez_compressed", half_save)
    with pytest.raises(OSError, match="interrupted"):
        atomic.write_npz(target, x=np.arange(5))
    monkeypatch.undo()
    with np.load(target) as data:
        np.testing.assert_array_equal(data["x"], np.arange(3))
    assert files_in(tmp_path) == {"a.npz"}


def test_failed_save_part_is_not_a_part(tmp_path, monkeypatch):
    run = Run(ToyConfig.from_profile("smoke"), MANIFESTS, root=tmp_path)
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".csv"):
            raise OSError("killed")
        real_replace(src, dst)

    monkeypatch.setattr(defectlib.atomic.os, "replace", replace)
    with pytest.raises(OSError, match="killed"):
        run.save_part("fold0", fold_table(0), seconds=1.0)
    monkeypatch.undo()
    assert not run.has_part("fold0")
    assert not any(name.endswith(".tmp") for name in files_in(run.path / "parts"))


# -- metrics.json with numpy values ----------------------------------------------------------


def test_metrics_json_handles_numpy_scalars_and_nan(tmp_path):
    run = Run(ToyConfig.from_profile("smoke"), MANIFESTS, root=tmp_path)
    metrics = {
        "f1": np.float64(0.8),
        "precision": np.float32(0.5),
        "tp": np.int64(12),
        "fn": np.int32(3),
        "u8": np.uint8(255),
        "ap": float("nan"),
        "np_nan": np.float64(np.nan),
        "nan32": np.float32(np.nan),
        "inf": np.inf,
        "curve": np.array([0.0, 0.5, 1.0]),
        "nested": {"fold0": {"auc": np.float32(0.25)}},
        "path": Path("a/b"),
    }
    result = run.finish(fold_table(0), metrics)
    text = (run.path / "metrics.json").read_text()
    assert "NaN" in text
    loaded = json.loads(text)
    assert loaded["f1"] == 0.8 and loaded["precision"] == 0.5
    assert loaded["tp"] == 12 and isinstance(loaded["tp"], int)
    assert loaded["fn"] == 3 and loaded["u8"] == 255
    assert math.isnan(loaded["ap"]) and math.isnan(loaded["np_nan"]) and math.isnan(loaded["nan32"])
    assert math.isinf(loaded["inf"])
    assert loaded["curve"] == [0.0, 0.5, 1.0]
    assert loaded["nested"] == {"fold0": {"auc": 0.25}}
    assert loaded["path"] == "a/b"
    assert math.isnan(result.metrics["ap"]) and result.metrics["tp"] == 12


def test_metrics_json_handles_numpy_bool(tmp_path):
    atomic.write_json(tmp_path / "m.json", {"converged": np.bool_(True), "flags": np.array([True, False])})
    assert json.loads((tmp_path / "m.json").read_text()) == {"converged": True, "flags": [True, False]}


def test_to_json_stable_for_key_order():
    assert atomic.to_json({"b": 1, "a": {"d": 2, "c": 3}}) == atomic.to_json({"a": {"c": 3, "d": 2}, "b": 1})


# -- doctests -----------------------------------------------------------------------------


@pytest.mark.parametrize("module", [defectlib.results, defectlib.atomic])
def test_doctests(module, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_git_state_counts_code_changes_not_results_moved_in_the_cache(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    (tmp_path / "book" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "book" / "results" / "metrics.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    clean = defectlib.results.git_state(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False and clean["changed"] == []
    (tmp_path / "book" / "results" / "metrics.json").unlink()  # a stale result moved out of the cache
    (tmp_path / "new.py").write_text("untracked\n")
    assert defectlib.results.git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert defectlib.results.git_state(tmp_path) == {"commit": clean["commit"], "dirty": True, "changed": ["code.py"]}
    (tmp_path / "book" / "results").mkdir(exist_ok=True)
    assert defectlib.results.git_state(tmp_path / "book" / "results")["changed"] == ["code.py"]  # paths from the top


def test_git_state_outside_a_checkout_is_unknown(tmp_path):
    assert defectlib.results.git_state(tmp_path) == {"commit": "unknown", "dirty": None}


def test_device_info_is_written_where_cuda_cannot_be_queried(monkeypatch):
    """A process forked after its parent initialised CUDA cannot ask for the GPU's name; the
    fold it trained is still recorded."""
    import torch

    def refuse(_index=0):
        raise RuntimeError("Cannot re-initialize CUDA in forked subprocess.")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", refuse)
    info = defectlib.results.device_info()
    assert info["cuda"] is True and info["gpu"] is None
    assert info["hostname"] == platform.node()
