"""The detector on one's own parts: the image folder and its checks, training to a model
directory, prediction, ONNX export against PyTorch, the runtimes, and the command line's
message for each kind of bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from defectlib.cli import main
from defectlib.deploy.folder import check_folder, part_of, read_folder, scan_folder, training_problem
from defectlib.deploy.model import (FORMAT_VERSION, INFO, build_networks, load_model, preprocess,
                                    save_model)
from defectlib.deploy.predict import defect_area, overlay, predict_images
from defectlib.deploy.train import study_recipe, train_config, validation_split
from defectlib.errors import DataError

SIZE = [64, 32]


def _image(path: Path, seed: int, shape=(80, 40)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(60, 200, shape, dtype=np.uint8))
    return path


def _mask(path: Path, shape=(80, 40), empty: bool = False) -> Path:
    mask = np.zeros(shape, np.uint8)
    if not empty:
        mask[20:30, 10:20] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), mask)
    return path


def make_folder(root: Path, parts: int = 6, *, bad_parts: int = 3) -> Path:
    """good/ and defective/ with masks: ``parts`` parts of two images, one defective in the first ``bad_parts``."""
    for p in range(parts):
        _image(root / "good" / f"p{p}__a.png", 10 * p)
        if p < bad_parts:
            _image(root / "defective" / f"p{p}__b.png", 10 * p + 1)
            _mask(root / "masks" / f"p{p}__b.png")
        else:
            _image(root / "good" / f"p{p}__b.png", 10 * p + 1)
    return root


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "parts")


def _info(val_paths=()) -> dict:
    cfg = train_config("smoke")
    return {"name": "m", "network": "proposed", "input_size": SIZE, "normalisation": {}, "threshold": 0.9,
            "map_threshold": 0.5, "config": cfg.to_dict(), "validation": {}, "training_seconds": 0.0,
            "data": {"source": "test", "checksum": "0" * 64, "val_image_paths": [str(p) for p in val_paths]}}


@pytest.fixture
def model_dir(tmp_path, folder):
    torch.manual_seed(0)
    segnet, classifier = build_networks("proposed")
    segnet.eval()
    with torch.no_grad():  # running statistics that are not the identity, so folding BatchNorm matters
        for m in segnet.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return save_model(tmp_path / "model", segnet, classifier, _info(sorted((folder / "good").iterdir())), "# card\n")


# --------------------------------------------------------------------------- the folder


def test_a_class_folder_reads_into_the_study_sample_table(folder):
    data = read_folder(folder)
    t = data.table
    assert len(t) == 12 and t["label"].sum() == 3
    assert sorted(t["group"].unique()) == [f"p{i}" for i in range(6)]  # the prefix before __ is the part
    assert (t.loc[t["label"] == 1, "defect_area"] == 100).all() and (t.loc[t["label"] == 0, "mask_path"] == "").all()
    assert set(t["dataset"]) == {"folder"} and t[["height", "width"]].drop_duplicates().values.tolist() == [[80, 40]]
    assert data.checksum == read_folder(folder).checksum and len(data.checksum) == 64


def test_a_labels_csv_with_parts(tmp_path):
    root = tmp_path / "csv"
    for i in range(4):
        _image(root / "imgs" / f"{i}.png", i)
    _mask(root / "m" / "1.png")
    pd.DataFrame({"image": [f"imgs/{i}.png" for i in range(4)], "label": ["good", "defective", "0", "ok"],
                  "mask": ["", "m/1.png", "", ""], "part": ["A", "A", "B", "C"]}).to_csv(root / "labels.csv", index=False)
    t = read_folder(root).table
    assert t.set_index("sample_id")["group"].to_dict() == {"imgs/0.png": "A", "imgs/1.png": "A", "imgs/2.png": "B",
                                                           "imgs/3.png": "C"}
    assert t["label"].tolist() == [0, 1, 0, 0]


def test_part_of_a_file_name():
    assert part_of("shaft07__top.png") == "shaft07" and part_of("single.png") == "single"


def test_every_fault_is_named_by_its_file(tmp_path):
    root = make_folder(tmp_path / "bad")
    _mask(root / "masks" / "p9__orphan.png")                               # a mask whose name matches no image
    _image(root / "defective" / "p7__nomask.png", 70)                        # defective, no mask
    (root / "good" / "p8__broken.png").write_bytes(b"not an image")          # unreadable
    data = (root / "good" / "p0__a.png").read_bytes()
    (root / "good" / "p8__cut.png").write_bytes(data[: len(data) // 2])      # truncated
    _image(root / "defective" / "p7__small.png", 71)
    _mask(root / "masks" / "p7__small.png", shape=(40, 20))                  # another size than its image
    _image(root / "good" / "p8__marked.png", 81)
    _mask(root / "masks" / "p8__marked.png")                                 # a good image with defect pixels
    _image(root / "defective" / "p8__clean.png", 82)
    _mask(root / "masks" / "p8__clean.png", empty=True)                      # a defective image with an empty mask
    _, faults = check_folder(root)
    by_file = {Path(f.path).name: f.problem for f in faults}
    assert "mask without its image" in by_file["p9__orphan.png"]
    assert "without its mask" in by_file["p7__nomask.png"]
    assert "cannot decode" in by_file["p8__broken.png"]
    assert "truncated" in by_file["p8__cut.png"]
    assert "mask is 20x40" in by_file["p7__small.png"]
    assert "labelled good" in by_file["p8__marked.png"] and "labelled defective" in by_file["p8__clean.png"]
    assert len(faults) == 7


def test_what_cannot_train_says_why(folder):
    t = read_folder(folder).table
    assert training_problem(t) is None
    assert "no defective image" in training_problem(t[t["label"] == 0])
    assert "at least 5 parts" in training_problem(t[t["group"].isin(["p0", "p1", "p3"])])


def test_empty_folders_are_named(tmp_path):
    assert "neither good/ nor defective/" in scan_folder(tmp_path).faults[0].problem
    (tmp_path / "good").mkdir()
    assert "no images found" in scan_folder(tmp_path).faults[0].problem


# --------------------------------------------------------------------------- recipe and split


def test_the_recipe_is_the_study_config():
    from defectlib.experiments.seg000 import Seg000Config

    study = Seg000Config.from_profile("converged", model="proposed")
    cfg = train_config("converged")
    assert (cfg.input_size, cfg.seg_steps, cfg.clf_steps, cfg.lr_seg, cfg.lr_clf, cfg.threshold) == (
        study.input_size, study.seg_steps, study.clf_steps, study.lr_seg, study.lr_clf, study.threshold)
    assert study_recipe("smoke")["input_size"] == SIZE


def test_the_validation_split_keeps_parts_whole(folder):
    t = read_folder(folder).table
    train, val = validation_split(t, val_fraction=0.2, seed=0)
    assert not set(train["group"]) & set(val["group"]) and len(train) + len(val) == len(t)
    assert set(val["label"]) == {0, 1}


# --------------------------------------------------------------------------- model directory, prediction


def test_a_model_directory_reads_back(model_dir):
    model = load_model(model_dir)
    assert model.input_size == tuple(SIZE) and model.info["format_version"] == FORMAT_VERSION
    score, prob = model.detector(torch.from_numpy(preprocess(np.zeros((100, 50), np.uint8), SIZE)))
    assert score.shape == (1,) and prob.shape == (1, 1, 8, 4)


def test_predict_scores_any_size_and_names_a_corrupt_image(model_dir, folder, tmp_path, capsys):
    _image(tmp_path / "new" / "wide.png", 5, shape=(37, 211))
    (tmp_path / "new" / "corrupt.jpg").write_bytes(b"\xff\xd8 broken")
    out, overlays = tmp_path / "scores.csv", tmp_path / "overlays"
    code = main(["predict", str(model_dir), str(tmp_path / "new"), str(folder / "good" / "p0__a.png"),
                 "--out", str(out), "--overlays", str(overlays)])
    err = capsys.readouterr().err
    assert code == 2 and "1 of 3 images could not be scored" in err and "corrupt.jpg" in err
    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["file", "score", "decision", "defect_area"]
    assert table.set_index(table["file"].map(lambda f: Path(f).name))["decision"].to_dict()["corrupt.jpg"] == "error"
    assert table["score"].notna().sum() == 2 and sorted(p.name for p in overlays.iterdir()) == ["p0__a.png", "wide.png"]
    assert cv2.imread(str(overlays / "wide.png")).shape == (37, 211, 3)  # at the image's own size


def test_defect_area_is_in_pixels_of_the_original_image():
    prob = np.zeros((8, 4), np.float32)
    prob[0, :2] = 0.9
    assert defect_area(prob, 0.5, (800, 400)) == 2 * 100 * 100
    assert overlay(np.zeros((80, 40), np.uint8), prob, 0.5).shape == (80, 40, 3)


# --------------------------------------------------------------------------- bad input: one message, exit 2


def _error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("defectlib: error:"), err
    return err


def test_bad_input_gets_one_clear_message(tmp_path, folder, model_dir, capsys, isolated):
    out = str(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    assert "neither good/ nor defective/" in _error(capsys, ["train", str(tmp_path / "empty"), "--out", out])

    only_good = tmp_path / "only-good"
    for i in range(6):
        _image(only_good / "good" / f"p{i}__a.png", i)
    assert "no defective image" in _error(capsys, ["train", str(only_good), "--out", out])

    mismatched = make_folder(tmp_path / "mismatched")
    os.rename(mismatched / "masks" / "p0__b.png", mismatched / "masks" / "p0_b.png")
    err = _error(capsys, ["train", str(mismatched), "--out", out])
    assert "p0_b.png: mask without its image" in err and "p0__b.png: defective image without its mask" in err

    unreadable = make_folder(tmp_path / "unreadable")
    (unreadable / "good" / "p5__a.png").write_bytes(b"")
    assert "p5__a.png: empty file" in _error(capsys, ["train", str(unreadable), "--out", out])

    assert "no images in" in _error(capsys, ["predict", str(model_dir), str(tmp_path / "empty")])
    info = json.loads((model_dir / INFO).read_text())
    (model_dir / INFO).write_text(json.dumps({**info, "format_version": FORMAT_VERSION + 1}))
    err = _error(capsys, ["predict", str(model_dir), str(folder)])
    assert f"format version {FORMAT_VERSION + 1}" in err and "train it again" in err
    assert "not a model directory" in _error(capsys, ["predict", str(folder), str(folder)])
    assert not Path(out).exists()


def test_runtimes_need_the_export_first(model_dir, folder, capsys):
    err = _error(capsys, ["predict", str(model_dir), str(folder), "--runtime", "onnxruntime"])
    assert "export it first: defectlib export" in err


def test_another_model_in_the_output_folder_is_not_overwritten(model_dir):
    from defectlib.deploy.train import existing_model

    with pytest.raises(DataError, match="already holds a model"):
        existing_model(model_dir, train_config("smoke", seg_steps=7), "0" * 64)
    assert existing_model(model_dir, train_config("smoke"), "0" * 64)


# --------------------------------------------------------------------------- export and runtimes


@pytest.mark.slow
def test_export_matches_pytorch_under_both_runtimes(model_dir, folder, capsys):
    assert main(["export", str(model_dir), "--onnx"]) == 0
    printed = capsys.readouterr().out
    record = json.loads((model_dir / "onnx.json").read_text())
    assert record["opset"] == 17 and len(record["images"]) == 8 and "max abs difference" in printed
    for runtime in ("onnxruntime", "openvino"):
        assert max(record["max_abs_diff"][runtime].values()) <= 1e-4
    model = load_model(model_dir)
    paths = sorted((folder / "good").iterdir())
    reference = predict_images(model, paths)["score"].to_numpy()
    for runtime in ("onnxruntime", "openvino"):
        assert np.abs(predict_images(model, paths, runtime=runtime)["score"].to_numpy() - reference).max() <= 1e-4


@pytest.mark.slow
def test_the_onnx_graph_folds_batchnorm_and_takes_any_size(model_dir):
    import onnx
    import onnxruntime as ort

    from defectlib.deploy.export import export_onnx

    path = export_onnx(load_model(model_dir), model_dir / "model.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    score, prob = session.run(None, {"image": np.zeros((2, 1, 128, 48), np.float32)})
    assert score.shape == (2,) and prob.shape == (2, 1, 16, 6)


@pytest.mark.slow
def test_bench_runtimes_writes_side_by_side_figures(model_dir, tmp_path, capsys):
    from defectlib.deploy.export import export_onnx

    export_onnx(load_model(model_dir), model_dir / "model.onnx")
    out = tmp_path / "bench.json"
    assert main(["bench-runtimes", str(model_dir), "--size", "64x32", "--repeats", "2", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [r["runtime"] for r in record["rows"]] == ["torch", "onnxruntime", "openvino"]
    assert record["threads"] == 2 and set(record["fastest"]) == {"64x32"}
    assert "the PyTorch path" in capsys.readouterr().out


# --------------------------------------------------------------------------- training end to end


def _state(folder: Path) -> dict:
    return torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_train_writes_a_model_directory_and_resumes(tmp_path, isolated, monkeypatch, capsys):
    import defectlib.training.seg000 as two_stages
    from defectlib.deploy.demo import demo_folders

    folder, _ = demo_folders("synthetic", tmp_path / "folders", n_train=40, n_test=8)
    argv = ["train", str(folder), "--profile", "smoke", "--quiet", "--seg-steps", "12", "--clf-steps", "6"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert "validation" in capsys.readouterr().out
    info = json.loads((tmp_path / "a" / INFO).read_text())
    assert info["format_version"] == FORMAT_VERSION and info["input_size"] == SIZE and info["threshold"] == 0.9
    assert info["data"]["checksum"] == read_folder(folder).checksum and "ap" in info["validation"]
    assert "Trained on" in (tmp_path / "a" / "MODEL_CARD.md").read_text()
    assert not (tmp_path / "a" / ".checkpoints").exists()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(two_stages, "train_classifier", stopped)  # stop after the first stage
    assert main([*argv, "--out", str(tmp_path / "b")]) == 130
    assert (tmp_path / "b" / ".checkpoints" / "segmentation.pt").is_file()
    monkeypatch.undo()
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0  # resumes: the first stage is read back
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    for net in ("segnet", "classifier"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net])
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert "already trained" in capsys.readouterr().err


@pytest.mark.slow
def test_a_kolektor_folder_trains_and_exports_within_tolerance(tmp_path, isolated, capsys):
    from defectlib.paths import data_root

    if not (data_root() / "KolektorSDD").is_dir():
        pytest.skip("KolektorSDD is not under DEFECTLIB_DATA")
    from defectlib.deploy.demo import demo_folders

    folder, test = demo_folders("kolektorsdd", tmp_path / "folders", n_train=48, n_test=8)
    model = tmp_path / "model"
    assert main(["train", str(folder), "--out", str(model), "--profile", "smoke", "--quiet", "--input-size",
                 "176x64"]) == 0
    assert main(["export", str(model), "--onnx"]) == 0
    record = json.loads((model / "onnx.json").read_text())
    assert all("KolektorSDD" not in p and str(folder) in p for p in record["images"])  # the folder's real images
    assert max(v for d in record["max_abs_diff"].values() for v in d.values()) <= 1e-4
    scores = tmp_path / "scores.csv"
    assert main(["predict", str(model), *test["image_path"], "--out", str(scores), "--runtime", "openvino"]) == 0
    assert len(pd.read_csv(scores)) == len(test)
