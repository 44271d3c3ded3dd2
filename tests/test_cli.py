"""The command line: clear errors, JSON summary, folds manifests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from defectlib.cli import main

from helpers import REAL as REAL_DATA

HAS_REAL = (REAL_DATA / "KolektorSDD").is_dir() and (REAL_DATA / "MagneticTile").is_dir()


def test_wrong_data_root_gives_one_clear_error(tmp_path):
    missing = tmp_path / "nowhere"
    env = {**os.environ, "DEFECTLIB_DATA": str(missing)}
    proc = subprocess.run([sys.executable, "-m", "defectlib", "data", "summary"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(missing / "KolektorSDD") in proc.stderr
    assert "expected layout" in proc.stderr and "defectlib data download" in proc.stderr
    assert proc.stdout == ""


def test_malformed_dataset_names_the_file(tmp_path, capsys):
    part = tmp_path / "KolektorSDD" / "kos01"
    part.mkdir(parents=True)
    (part / "Part0.jpg").write_bytes(b"not a jpeg")
    (part / "Part0_label.png").write_bytes(b"")
    assert main(["data", "summary", "kolektorsdd", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Part0.jpg" in err and "cannot decode" in err


def test_summary_of_synthetic_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEFECTLIB_CACHE", str(tmp_path))
    assert main(["data", "summary", "synthetic"]) == 0
    report = json.loads(capsys.readouterr().out)["synthetic"]
    assert report["images"] == 48 and report["defective"] == 24
    assert report["groups"] == 12
    assert set(report["defect_area_quantiles"]) >= {"0", "0.5", "1"}


@pytest.mark.skipif(not HAS_REAL, reason="real datasets not available")
def test_summary_of_the_real_datasets(capsys):
    assert main(["data", "summary", "--root", str(REAL_DATA)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["kolektorsdd"]["images"], report["kolektorsdd"]["defective"]) == (399, 52)
    assert report["kolektorsdd"]["groups"] == 50
    mt = report["magnetictile"]
    assert (mt["images"], mt["defective"]) == (1344, 392)
    assert mt["classes"] == {"Blowhole": 115, "Break": 85, "Crack": 57, "Fray": 32, "Free": 952, "Uneven": 103}


def test_folds_command_writes_a_manifest(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEFECTLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEFECTLIB_RESULTS", str(tmp_path / "results"))
    assert main(["data", "folds", "synthetic", "--k", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    path = Path(out["path"])
    assert path.parent == tmp_path / "results" / "folds" and path.name.startswith("synthetic-k4-seed0-")
    import hashlib

    assert out["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_book_rejects_an_unknown_profile(capsys):
    with pytest.raises(SystemExit):
        main(["book", "--profile", "huge"])
    assert "invalid choice" in capsys.readouterr().err
