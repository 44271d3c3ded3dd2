"""Tests of the data checks (defectlib.data.integrity), the mask rule, changed data against the
folds manifests, and the command line's errors (exit 2, one message, no traceback).

Faulty datasets are built in ``tmp_path``: tiny ones from generated pixels, and small copies of
the real data when it is present. Several faults are mixed in one copy, and one run must name
every one of them.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectlib import atomic
from defectlib.cli import main
from defectlib.config import ExperimentConfig, notebook_config
from defectlib.data import load_samples
from defectlib.data.folds import ensure_folds
from defectlib.data.integrity import check_dataset, verify_dataset
from defectlib.data.io import read_mask
from defectlib.data.kolektor import kolektor_samples
from defectlib.errors import ConfigError, DataError

from helpers import REAL, needs_kolektor

# --------------------------------------------------------------------------- builders


def _jpeg(path: Path, shape=(20, 12), seed=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def _mask(path: Path, shape=(20, 12), defect=True, value=255) -> None:
    mask = np.zeros(shape, np.uint8)
    if defect:
        mask[4:8, 3:6] = value
    assert cv2.imwrite(str(path), mask)


def make_kolektor(root: Path, groups=6, parts=3) -> Path:
    """A clean tiny KolektorSDD; Part0 of every folder defective."""
    for g in range(1, groups + 1):
        for p in range(parts):
            folder = root / f"kos{g:02d}"
            _jpeg(folder / f"Part{p}.jpg", seed=100 * g + p)
            _mask(folder / f"Part{p}_label.png", defect=p == 0)
    return root


def make_magnetic(root: Path) -> Path:
    """A clean tiny MagneticTile: two images per class, masks with soft edges."""
    for c, cls in enumerate(("Blowhole", "Crack", "Free")):
        for i in range(2):
            imgs = root / f"MT_{cls}" / "Imgs"
            _jpeg(imgs / f"exp{c}_num_{i}.jpg", seed=10 * c + i)
            mask = np.zeros((20, 12), np.uint8)
            if cls != "Free":
                mask[5:9, 4:7] = 255
                mask[4, 4:7] = 90  # a soft edge
            assert cv2.imwrite(str(imgs / f"exp{c}_num_{i}.png"), mask)
    return root


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "defectlib", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=300)


def assert_clean_failure(proc: subprocess.CompletedProcess, *named: str) -> None:
    """Exit 2, no traceback, and every one of ``named`` in what was printed."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    missing = [n for n in named if n not in out]
    assert not missing, f"not named: {missing}\n{out}"


@pytest.fixture
def env(tmp_path) -> dict:
    """Results and cache in tmp_path, for the subprocesses."""
    return {"DEFECTLIB_RESULTS": str(tmp_path / "results"), "DEFECTLIB_CACHE": str(tmp_path / "cache")}


# --------------------------------------------------------------------------- the mask rule


def _encoded(path: Path, kind: str) -> np.ndarray:
    """Write a mask in encoding ``kind``; return the binary mask it stands for."""
    expected = np.zeros((9, 7), np.uint8)
    expected[2:5, 1:4] = 1
    if kind == "0/1":
        pixels = expected
    elif kind == "0/100":
        pixels = expected * np.uint8(100)
    elif kind == "0/255 bmp":
        path = path.with_suffix(".bmp")
        pixels = expected * np.uint8(255)
    elif kind == "red-only RGB":
        pixels = np.zeros((9, 7, 3), np.uint8)
        pixels[..., 2] = expected * 255  # OpenCV writes BGR: channel 2 is red
    elif kind == "RGBA":
        pixels = np.zeros((9, 7, 4), np.uint8)
        pixels[..., 2] = expected * 255
        pixels[..., 3] = 255  # opaque everywhere: alpha is no defect
    elif kind == "16-bit 0/200":
        pixels = expected.astype(np.uint16) * 200
    elif kind == "16-bit 0/65535":
        pixels = expected.astype(np.uint16) * 65535
    elif kind == "16-bit soft":
        pixels = expected.astype(np.uint16) * 60000
        pixels[0, 0] = 1000  # a faint edge, under half the 16-bit scale
    elif kind == "soft 8-bit":
        pixels = expected * np.uint8(255)
        pixels[0, :] = 100  # anti-aliased edge, under 128
    else:
        raise AssertionError(kind)
    assert cv2.imwrite(str(path), pixels)
    return path, expected


ENCODINGS = ["0/1", "0/100", "0/255 bmp", "red-only RGB", "RGBA", "16-bit 0/200", "16-bit 0/65535",
             "16-bit soft", "soft 8-bit"]


@pytest.mark.parametrize("kind", ENCODINGS)
def test_every_mask_encoding_reads_as_the_right_binary_mask(tmp_path, kind):
    path, expected = _encoded(tmp_path / "m.png", kind)
    np.testing.assert_array_equal(read_mask(path), expected)


@pytest.mark.parametrize("kind", ["0/1", "0/100", "red-only RGB", "16-bit 0/200"])
def test_a_defect_in_another_encoding_stays_defective(tmp_path, kind):
    root = make_kolektor(tmp_path / "KolektorSDD", groups=3)
    before = kolektor_samples(root).set_index("sample_id")
    mask = root / "kos02" / "Part0_label.png"
    pixels = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE) > 0
    if kind == "0/1":
        cv2.imwrite(str(mask), pixels.astype(np.uint8))
    elif kind == "0/100":
        cv2.imwrite(str(mask), pixels.astype(np.uint8) * 100)
    elif kind == "red-only RGB":
        colour = np.zeros(pixels.shape + (3,), np.uint8)
        colour[..., 2] = pixels * 255
        cv2.imwrite(str(mask), colour)
    else:
        cv2.imwrite(str(mask), pixels.astype(np.uint16) * 200)
    after = kolektor_samples(root).set_index("sample_id")
    assert after.loc["kos02/Part0", "label"] == 1
    assert after.loc["kos02/Part0", "defect_area"] == before.loc["kos02/Part0", "defect_area"] == 12
    assert check_dataset("kolektorsdd", root).ok


@pytest.mark.parametrize("values", [[0, 20, 40], [0, 1, 127]])
def test_a_soft_mask_with_nothing_above_half_scale_is_refused_by_name(tmp_path, values):
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), np.array([values], np.uint8))
    with pytest.raises(DataError) as err:
        read_mask(path)
    assert str(path) in str(err.value) and "cannot tell defect from background" in str(err.value)


# --------------------------------------------------------------------------- every fault, one run


def _break_kolektor(root: Path) -> dict[str, Path]:
    """Mix many faults into a clean tiny KolektorSDD; return the paths each fault must name."""
    truncated = root / "kos01" / "Part1.jpg"
    truncated.write_bytes(truncated.read_bytes()[:-40])
    orphan = root / "kos02" / "Part1_label.png"
    (root / "kos02" / "Part1.jpg").unlink()
    no_mask = root / "kos02" / "Part2.jpg"
    (root / "kos02" / "Part2_label.png").unlink()
    wrong_size = root / "kos03" / "Part1_label.png"
    _mask(wrong_size, shape=(21, 12))
    soft = root / "kos03" / "Part2_label.png"
    cv2.imwrite(str(soft), np.array([[0, 30, 60]] * 20, np.uint8).repeat(4, axis=1))
    corrupt_mask = root / "kos04" / "Part1_label.png"
    corrupt_mask.write_bytes(corrupt_mask.read_bytes()[:-20])
    duplicate = root / "kos05" / "Part3.jpg"
    shutil.copy(root / "kos04" / "Part2.jpg", duplicate)
    _mask(root / "kos05" / "Part3_label.png", defect=False)
    symlinked = root / "kos07"
    symlinked.symlink_to(root / "kos06", target_is_directory=True)
    stray = root / "kos06_junk"
    _jpeg(stray / "Part0.jpg")
    _mask(stray / "Part0_label.png")
    return {"truncated": truncated, "orphan": orphan, "no_mask": no_mask, "wrong_size": wrong_size,
            "soft": soft, "corrupt_mask": corrupt_mask, "duplicate": duplicate, "symlinked": symlinked,
            "stray": stray}


def test_check_names_every_fault_of_a_faulty_kolektor_copy(tmp_path, env):
    root = make_kolektor(tmp_path / "data" / "KolektorSDD")
    named = _break_kolektor(root)
    report = check_dataset("kolektorsdd", root)
    faulty = {Path(f.path) for f in report.faults}
    assert set(named.values()) <= faulty
    assert len(report.faults) == len(named)  # and nothing else
    proc = run_cli("data", "check", "kolektorsdd", "--root", str(tmp_path / "data"), env=env)
    assert_clean_failure(proc, *(str(p) for p in named.values()), "truncated", "mask without its image",
                         "no mask beside it", "12x21", "cannot tell defect from background",
                         "the same image as", "a symlink to", "stray folder")
    for path in named.values():  # one line each
        assert sum(str(path) + ":" in line for line in proc.stderr.splitlines()) >= 1
    summary = run_cli("data", "summary", "kolektorsdd", "--root", str(tmp_path / "data"), env=env)
    assert_clean_failure(summary, *(str(p) for p in named.values()))
    assert summary.stdout == ""


def test_load_samples_raises_every_fault_at_once(tmp_path, isolated):
    root = make_kolektor(tmp_path / "data" / "KolektorSDD")
    named = _break_kolektor(root)
    with pytest.raises(DataError) as err:
        load_samples("kolektorsdd", tmp_path / "data")
    assert all(str(p) in str(err.value) for p in named.values())
    assert f"{len(named)} faults" in str(err.value)


def test_check_names_every_fault_of_a_faulty_magnetic_copy(tmp_path, env):
    root = make_magnetic(tmp_path / "data" / "MagneticTile")
    imgs = root / "MT_Crack" / "Imgs"
    orphan = imgs / "exp9_num_9.png"
    _mask(orphan)
    no_mask = imgs / "exp1_num_1.jpg"
    (imgs / "exp1_num_1.png").unlink()
    truncated = root / "MT_Free" / "Imgs" / "exp2_num_0.jpg"
    truncated.write_bytes(truncated.read_bytes()[:-10])
    stray = root / "MT_Junk"
    _jpeg(stray / "Imgs" / "a.jpg")
    repeated = root / "MT_Fray"
    repeated.symlink_to(root / "MT_Blowhole", target_is_directory=True)
    proc = run_cli("data", "check", "--root", str(tmp_path / "data"), env=env)
    assert_clean_failure(proc, str(orphan), str(no_mask), str(truncated), str(stray), str(repeated))
    assert "magnetictile at" in proc.stderr and "5 faults" in proc.stderr


def test_clean_data_passes_and_is_checked_once(tmp_path, isolated, env, monkeypatch):
    make_kolektor(tmp_path / "data" / "KolektorSDD")
    make_magnetic(tmp_path / "data" / "MagneticTile")
    proc = run_cli("data", "check", "--root", str(tmp_path / "data"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("kolektorsdd: OK") and "\nmagnetictile: OK" in proc.stdout
    # the readers find the clean result and do not check the same content again
    import defectlib.data.integrity as integrity

    monkeypatch.setattr(integrity, "check_dataset", lambda *a: pytest.fail("checked twice"))
    assert len(load_samples("kolektorsdd", tmp_path / "data")) == 18
    # any change to the folder is checked again
    (tmp_path / "data" / "KolektorSDD" / "kos01" / "Part9_label.png").write_bytes(b"")
    with pytest.raises(pytest.fail.Exception, match="checked twice"):
        verify_dataset("kolektorsdd", tmp_path / "data" / "KolektorSDD")


def test_clutter_outside_the_layout_is_not_a_fault(tmp_path):
    root = make_kolektor(tmp_path / "KolektorSDD", groups=3)
    (root / "split_files").mkdir()
    (root / "README.txt").write_text("x")
    (root / "kos01" / "notes.txt").write_text("x")
    (root / ".hidden").mkdir()
    assert check_dataset("kolektorsdd", root).ok


@needs_kolektor
def test_a_faulty_copy_of_real_kolektor_is_named_in_full(tmp_path, env):
    root = tmp_path / "data" / "KolektorSDD"
    for group in ("kos01", "kos02", "kos03"):
        shutil.copytree(REAL / "KolektorSDD" / group, root / group)
    truncated = root / "kos01" / "Part4.jpg"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    orphan = root / "kos02" / "Part6_label.png"
    (root / "kos02" / "Part6.jpg").unlink()
    red = root / "kos03" / "Part0_label.png"  # read by the rule, not a fault
    grey = cv2.imread(str(red), cv2.IMREAD_GRAYSCALE)
    colour = np.zeros(grey.shape + (3,), np.uint8)
    colour[..., 2] = grey
    cv2.imwrite(str(red), colour)
    (root / "kos04").symlink_to(root / "kos03", target_is_directory=True)
    shutil.copytree(root / "kos02", root / "kos02_junk")
    proc = run_cli("data", "check", "kolektorsdd", "--root", str(tmp_path / "data"), env=env)
    assert_clean_failure(proc, str(truncated), str(orphan), str(root / "kos04"), str(root / "kos02_junk"))
    assert str(red) not in proc.stderr
    assert "Premature end" not in proc.stderr  # decoded by the check, not by a warning on stderr


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "KolektorSDD").is_dir() or not (REAL / "MagneticTile").is_dir(),
                    reason="real datasets not available")
def test_the_real_datasets_pass_the_check(tmp_path, env):
    proc = run_cli("data", "check", "--root", str(REAL), env={**env, "DEFECTLIB_RESULTS": ""})
    assert proc.returncode == 0, proc.stderr
    assert "kolektorsdd: OK, 399 images" in proc.stdout and "magnetictile: OK, 1344 images" in proc.stdout
    assert "data checksum 31fc94e3e9d9" in proc.stdout and "data checksum 7cff5a20028b" in proc.stdout


# --------------------------------------------------------------------------- changed data and the folds


def test_a_deleted_image_stops_the_folds_and_names_it(tmp_path, env):
    data = tmp_path / "data"
    root = make_kolektor(data / "KolektorSDD")
    first = run_cli("data", "folds", "kolektorsdd", "--root", str(data), env=env)
    assert first.returncode == 0, first.stderr
    (root / "kos03" / "Part2.jpg").unlink()
    (root / "kos03" / "Part2_label.png").unlink()
    proc = run_cli("data", "folds", "kolektorsdd", "--root", str(data), env=env)
    assert_clean_failure(proc, "missing: kos03/Part2.jpg", "--new-split")
    assert len(list((tmp_path / "results" / "folds").iterdir())) == 1  # nothing new written
    check = run_cli("data", "check", "kolektorsdd", "--root", str(data), env=env)
    assert_clean_failure(check, "missing: kos03/Part2.jpg")
    again = run_cli("data", "folds", "kolektorsdd", "--root", str(data), "--new-split", env=env)
    assert again.returncode == 0, again.stderr
    assert len(list((tmp_path / "results" / "folds").iterdir())) == 2


def test_changed_and_added_samples_are_named(tmp_path):
    root = make_kolektor(tmp_path / "KolektorSDD")
    folder = tmp_path / "folds"
    ensure_folds("kolektorsdd", kolektor_samples(root), n_folds=3, seed=0, root=folder)
    _mask(root / "kos02" / "Part1_label.png", defect=True)
    _jpeg(root / "kos07" / "Part0.jpg", seed=999)
    _mask(root / "kos07" / "Part0_label.png")
    with pytest.raises(DataError) as err:
        ensure_folds("kolektorsdd", kolektor_samples(root), n_folds=3, seed=0, root=folder)
    assert "mask changed: kos02/Part1.jpg" in str(err.value) and "added: kos07/Part0.jpg" in str(err.value)
    # another k of the data the manifests were made from is a new split asked for by name
    ensure_folds("kolektorsdd", kolektor_samples(make_kolektor(tmp_path / "again" / "KolektorSDD")),
                 n_folds=2, seed=0, root=folder)


def test_generated_data_is_split_anew_without_asking(tmp_path):
    table = kolektor_samples(make_kolektor(tmp_path / "KolektorSDD"))
    ensure_folds("synthetic", table, n_folds=3, seed=0, root=tmp_path / "folds")
    ensure_folds("synthetic", table.iloc[:-3], n_folds=3, seed=0, root=tmp_path / "folds")
    assert len(list((tmp_path / "folds").iterdir())) == 2


@pytest.mark.slow
@needs_kolektor
def test_real_kolektor_without_one_image_is_refused_against_the_committed_manifest(tmp_path, env):
    data = tmp_path / "data"
    root = data / "KolektorSDD"
    root.mkdir(parents=True)
    for group in sorted((REAL / "KolektorSDD").iterdir()):
        if group.name == "kos05":
            shutil.copytree(group, root / group.name)
        else:
            (root / group.name).symlink_to(group, target_is_directory=True)
    (root / "kos05" / "Part3.jpg").unlink()
    (root / "kos05" / "Part3_label.png").unlink()
    folds = tmp_path / "results" / "folds"
    folds.mkdir(parents=True)
    committed = Path(__file__).resolve().parents[1] / "book" / "results" / "folds"
    shutil.copy(committed / "kolektorsdd-k3-seed0-31fc94e3e9d9.csv", folds)
    proc = run_cli("data", "folds", "kolektorsdd", "--root", str(data), env=env)
    assert_clean_failure(proc, "1 missing", "missing: kos05/Part3.jpg")
    assert [p.name for p in folds.iterdir()] == ["kolektorsdd-k3-seed0-31fc94e3e9d9.csv"]


# --------------------------------------------------------------------------- command-line errors


@pytest.mark.parametrize("args, named", [
    (["--k", "1"], "the number of folds must be at least 2, got 1"),
    (["--k", "x"], "the number of folds must be an integer"),
    (["--seed", "-1"], "the seed must be at least 0, got -1"),
])
def test_out_of_range_folds_arguments_are_one_clear_error(args, named, env):
    proc = run_cli("data", "folds", "synthetic", *args, env=env)
    assert_clean_failure(proc, named)


def test_out_of_range_split_parameters_are_config_errors(tmp_path):
    table = kolektor_samples(make_kolektor(tmp_path / "KolektorSDD"))
    for k, seed in [(1, 0), (3, -1)]:
        with pytest.raises(ConfigError):
            ensure_folds("kolektorsdd", table, n_folds=k, seed=seed, root=tmp_path / "folds")
    assert not (tmp_path / "folds").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_results_folder_is_one_clear_error(tmp_path, env):
    results = tmp_path / "results"
    (results / "folds").mkdir(parents=True)
    results.joinpath("folds").chmod(0o555)
    try:
        proc = run_cli("data", "folds", "synthetic", "--k", "4", env=env)
    finally:
        results.joinpath("folds").chmod(0o755)
    assert_clean_failure(proc, str(results / "folds"), "Permission denied")


@pytest.mark.parametrize("error", [
    PermissionError(errno.EACCES, "Permission denied"),
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EROFS, "Read-only file system"),
])
def test_a_failed_write_names_the_file(tmp_path, monkeypatch, capsys, error):
    monkeypatch.setenv("DEFECTLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEFECTLIB_RESULTS", str(tmp_path / "results"))
    real_replace = os.replace

    def failing(src, dst):
        if Path(dst).parent.name == "folds":
            raise error
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing)
    assert main(["data", "folds", "synthetic", "--k", "4"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'results' / 'folds'}/synthetic-k4-seed0-" in err and error.strerror in err
    assert "Traceback" not in err
    assert not [p for p in (tmp_path / "results" / "folds").iterdir()]  # no temporary left


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic.write_text(tmp_path / "a.json", "{}")
        atomic.write_npz(tmp_path / "b.npz", x=np.zeros(2))
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "b.npz").stat().st_mode & 0o777 == mode


# --------------------------------------------------------------------------- configuration errors


class _Demo(ExperimentConfig):
    EXPERIMENT = "demo"
    PROFILES = {"smoke": {}}


def test_a_negative_seed_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="seed"):
        _Demo.from_profile("smoke", seed=-1)
    with pytest.raises(ConfigError, match="seed"):
        notebook_config(_Demo, {"profile": "smoke", "seed": -1}, before=set())
    assert _Demo.from_profile("smoke", seed=3).to_dict() == {"experiment": "demo", "profile": "smoke", "seed": 3}


def test_a_notebook_shows_the_message_not_a_traceback():
    err = ConfigError("demo: invalid parameter(s): seed: must be >= 0\n  second line")
    assert err._render_traceback_() == ["ConfigError: demo: invalid parameter(s): seed: must be >= 0",
                                        "  second line"]
    assert DataError("x")._render_traceback_() == ["DataError: x"]
