"""Tests of the dataset readers, the registry and the torch Dataset.

Covers defectlib.data.kolektor, .magnetic, .samples, .dataset and defectlib.data's
``load_samples``. Tiny fake datasets are built in ``tmp_path``; the real datasets (if present
under ``$DEFECTLIB_DATA`` or ``../shared/data``) are read once per module.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from defectlib.data import DATASETS, dataset_spec, load_samples
from defectlib.data.dataset import SurfaceDataset, load_pair
from defectlib.data.io import read_gray, read_mask
from defectlib.data.kolektor import kolektor_samples
from defectlib.data.magnetic import magnetic_tile_samples
from defectlib.data.masks import dilate_mask, resize_mask
from defectlib.data.samples import COLUMNS, make_table
from defectlib.data.summary import summarize
from defectlib.errors import DataError


from helpers import REAL, needs_kolektor, needs_magnetic  # noqa: E402


# --------------------------------------------------------------------------- fake datasets

#: (folder, part, height, width, defect rectangle (r0, r1, c0, c1) or None)
KOS_PARTS = [
    ("kos01", 0, 20, 12, None),
    ("kos01", 1, 22, 12, (3, 7, 2, 5)),  # 4x3 = 12 px
    ("kos01", 10, 21, 12, None),  # sorts between Part1 and Part2 by sample id
    ("kos01", 2, 20, 12, None),
    ("kos02", 0, 24, 12, (0, 2, 0, 12)),  # 2x12 = 24 px
    ("kos02", 1, 20, 12, None),
    ("kos10", 0, 23, 12, (10, 11, 6, 7)),  # a single pixel
]
KOS_AREAS = {
    f"{folder}/Part{part}": 0 if rect is None else (rect[1] - rect[0]) * (rect[3] - rect[2])
    for folder, part, _, _, rect in KOS_PARTS
}


def make_kolektor(root: Path, *, mask_ext: str = ".png", parts=KOS_PARTS) -> Path:
    """A tiny KolektorSDD: kosNN/PartM.jpg + PartM_label<mask_ext> (0/255), plus clutter."""
    rng = np.random.default_rng(0)
    for folder, part, h, w, rect in parts:
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 256, (h, w), dtype=np.uint8)
        assert cv2.imwrite(str(d / f"Part{part}.jpg"), image)
        mask = np.zeros((h, w), np.uint8)
        if rect is not None:
            r0, r1, c0, c1 = rect
            mask[r0:r1, c0:c1] = 255
        assert cv2.imwrite(str(d / f"Part{part}_label{mask_ext}"), mask)
    # clutter the reader must ignore
    (root / "kos01" / "notes.txt").write_text("not an image")
    (root / "kos01" / "Part0_extra.jpg").write_bytes(b"garbage")
    other = root / "split_files"
    other.mkdir(exist_ok=True)
    assert cv2.imwrite(str(other / "Part0.jpg"), np.zeros((4, 4), np.uint8))
    (root / "README.txt").write_text("readme")
    return root


#: class -> list of (name, height, width, mask values to place in row 0) ; soft-edged masks
MT_FILES = {
    "Free": [("exp0_num_1", 10, 8, []), ("exp0_num_2", 12, 9, [])],
    # values >127 count: 128, 200, 255 -> 3 ; 100, 127 do not
    "Crack": [("exp1_num_5", 11, 7, [100, 127, 128, 200, 255]), ("exp1_num_6", 9, 9, [200, 200])],
    # the first Uneven mask is empty (a soft mask with nothing above 127 is refused, see test_masks)
    "Uneven": [("exp2_num_3", 10, 10, []), ("exp2_num_4", 13, 6, [128])],
}
MT_AREAS = {
    f"MT_{cls}/{name}": sum(v > 127 for v in values)
    for cls, files in MT_FILES.items()
    for name, _, _, values in files
}


def make_magnetic(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for cls, files in MT_FILES.items():
        d = root / f"MT_{cls}" / "Imgs"
        d.mkdir(parents=True, exist_ok=True)
        for name, h, w, values in files:
            assert cv2.imwrite(str(d / f"{name}.jpg"), rng.integers(0, 256, (h, w), dtype=np.uint8))
            mask = np.zeros((h, w), np.uint8)
            mask[0, : len(values)] = values
            assert cv2.imwrite(str(d / f"{name}.png"), mask)
    (root / "MT_Crack" / "Imgs" / "Thumbs.db").write_bytes(b"x")
    (root / "other").mkdir()
    (root / "README.txt").write_text("readme")
    return root


@pytest.fixture
def kolektor_root(tmp_path) -> Path:
    return make_kolektor(tmp_path / "KolektorSDD")


@pytest.fixture
def magnetic_root(tmp_path) -> Path:
    return make_magnetic(tmp_path / "MagneticTile")


def _check_schema(table: pd.DataFrame) -> None:
    assert tuple(table.columns) == COLUMNS
    for col in ("label", "defect_area", "height", "width"):
        assert table[col].dtype == np.int64, col
    for col in ("sample_id", "dataset", "image_path", "mask_path", "group", "defect_class"):
        assert all(isinstance(v, str) for v in table[col]), col
    assert table["sample_id"].is_unique
    assert table["sample_id"].tolist() == sorted(table["sample_id"])
    assert table.index.tolist() == list(range(len(table)))
    assert set(table["label"]) <= {0, 1}
    for p in table["image_path"].tolist() + table["mask_path"].tolist():
        assert Path(p).is_absolute() and Path(p).is_file(), p


# --------------------------------------------------------------------------- KolektorSDD


def test_kolektor_fake_table(kolektor_root):
    table = kolektor_samples(kolektor_root)
    _check_schema(table)
    assert table["sample_id"].tolist() == [
        "kos01/Part0",
        "kos01/Part1",
        "kos01/Part10",
        "kos01/Part2",
        "kos02/Part0",
        "kos02/Part1",
        "kos10/Part0",
    ]
    t = table.set_index("sample_id")
    assert (table["dataset"] == "kolektorsdd").all()
    assert t["group"].to_dict() == {sid: sid.split("/")[0] for sid in t.index}
    assert t["defect_area"].to_dict() == KOS_AREAS
    assert t["label"].to_dict() == {sid: int(a > 0) for sid, a in KOS_AREAS.items()}
    assert t["defect_class"].to_dict() == {
        sid: "defective" if a > 0 else "good" for sid, a in KOS_AREAS.items()
    }
    sizes = {f"{f}/Part{p}": (h, w) for f, p, h, w, _ in KOS_PARTS}
    assert {sid: (r.height, r.width) for sid, r in t.iterrows()} == sizes
    assert t.loc["kos02/Part1", "image_path"] == str((kolektor_root / "kos02" / "Part1.jpg").resolve())
    assert t.loc["kos02/Part1", "mask_path"] == str(
        (kolektor_root / "kos02" / "Part1_label.png").resolve()
    )


def test_kolektor_bmp_and_png_masks_read_the_same(tmp_path):
    png = kolektor_samples(make_kolektor(tmp_path / "png", mask_ext=".png"))
    bmp = kolektor_samples(make_kolektor(tmp_path / "bmp", mask_ext=".bmp"))
    assert all(p.endswith("_label.bmp") for p in bmp["mask_path"])
    assert all(p.endswith("_label.png") for p in png["mask_path"])
    drop = ["image_path", "mask_path"]
    pd.testing.assert_frame_equal(png.drop(columns=drop), bmp.drop(columns=drop))
    for a, b in zip(png["mask_path"], bmp["mask_path"]):
        np.testing.assert_array_equal(read_mask(a), read_mask(b))


def test_kolektor_corrupt_image_names_the_file(kolektor_root):
    bad = kolektor_root / "kos02" / "Part1.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg" * 3)
    with pytest.raises(DataError) as err:
        kolektor_samples(kolektor_root)
    assert str(bad) in str(err.value)


def test_kolektor_corrupt_mask_names_the_file(kolektor_root):
    bad = kolektor_root / "kos01" / "Part1_label.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError) as err:
        kolektor_samples(kolektor_root)
    assert str(bad) in str(err.value)


def test_kolektor_mask_of_wrong_size_names_the_file(kolektor_root):
    bad = kolektor_root / "kos02" / "Part0_label.png"
    cv2.imwrite(str(bad), np.zeros((24, 13), np.uint8))
    with pytest.raises(DataError) as err:
        kolektor_samples(kolektor_root)
    assert str(bad) in str(err.value)
    assert "13x24" in str(err.value) and "12x24" in str(err.value)


def test_kolektor_missing_mask_names_the_image(kolektor_root):
    (kolektor_root / "kos10" / "Part0_label.png").unlink()
    with pytest.raises(DataError) as err:
        kolektor_samples(kolektor_root)
    assert str(kolektor_root / "kos10" / "Part0.jpg") in str(err.value)
    assert "Part0_label.bmp" in str(err.value) and "Part0_label.png" in str(err.value)


def test_kolektor_empty_folder(tmp_path):
    root = tmp_path / "KolektorSDD"
    root.mkdir()
    with pytest.raises(DataError) as err:
        kolektor_samples(root)
    assert str(root) in str(err.value)
    assert "kosNN/PartM.jpg" in str(err.value)


def test_kolektor_no_kos_folders(tmp_path):
    root = tmp_path / "KolektorSDD"
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "Part0.jpg"), np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(root / "Part0.jpg"), np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError) as err:
        kolektor_samples(root)
    assert str(root) in str(err.value)


# --------------------------------------------------------------------------- MagneticTile


def test_magnetic_fake_table(magnetic_root):
    table = magnetic_tile_samples(magnetic_root)
    _check_schema(table)
    assert table["sample_id"].tolist() == sorted(MT_AREAS)
    t = table.set_index("sample_id")
    assert (table["dataset"] == "magnetictile").all()
    assert (table["group"] == table["sample_id"]).all()
    assert t["defect_class"].to_dict() == {sid: sid.split("/")[0][3:] for sid in t.index}
    assert t["label"].to_dict() == {sid: int(not sid.startswith("MT_Free/")) for sid in t.index}
    # binarisation at > 127 of the soft-edged masks
    assert t["defect_area"].to_dict() == MT_AREAS
    assert t.loc["MT_Crack/exp1_num_5", "defect_area"] == 3
    sizes = {f"MT_{c}/{n}": (h, w) for c, files in MT_FILES.items() for n, h, w, _ in files}
    assert {sid: (r.height, r.width) for sid, r in t.iterrows()} == sizes


def test_magnetic_empty_uneven_mask_keeps_label_1(magnetic_root):
    row = magnetic_tile_samples(magnetic_root).set_index("sample_id").loc["MT_Uneven/exp2_num_3"]
    assert row["label"] == 1
    assert row["defect_area"] == 0
    assert row["defect_class"] == "Uneven"


def test_magnetic_corrupt_image_names_the_file(magnetic_root):
    bad = magnetic_root / "MT_Uneven" / "Imgs" / "exp2_num_4.jpg"
    bad.write_bytes(os.urandom(300))
    with pytest.raises(DataError) as err:
        magnetic_tile_samples(magnetic_root)
    assert str(bad) in str(err.value)


def test_magnetic_mask_of_wrong_size_names_the_file(magnetic_root):
    bad = magnetic_root / "MT_Crack" / "Imgs" / "exp1_num_6.png"
    cv2.imwrite(str(bad), np.zeros((10, 9), np.uint8))
    with pytest.raises(DataError) as err:
        magnetic_tile_samples(magnetic_root)
    assert str(bad) in str(err.value)


def test_magnetic_missing_mask_names_the_image(magnetic_root):
    (magnetic_root / "MT_Free" / "Imgs" / "exp0_num_2.png").unlink()
    with pytest.raises(DataError) as err:
        magnetic_tile_samples(magnetic_root)
    assert str(magnetic_root / "MT_Free" / "Imgs" / "exp0_num_2.jpg") in str(err.value)


def test_magnetic_no_mt_folders(tmp_path):
    root = tmp_path / "MagneticTile"
    (root / "Free" / "Imgs").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        magnetic_tile_samples(root)
    assert str(root) in str(err.value)
    assert "MT_<Class>" in str(err.value)


def test_magnetic_class_folder_without_images(magnetic_root):
    empty = magnetic_root / "MT_Break"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        magnetic_tile_samples(magnetic_root)
    assert str(empty / "Imgs") in str(err.value)


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", ["kolektorsdd", "magnetictile"])
def test_load_samples_wrong_root_explains(tmp_path, name):
    wrong = tmp_path / "no-data-here"
    with pytest.raises(DataError) as err:
        load_samples(name, wrong)
    msg = str(err.value)
    spec = dataset_spec(name)
    assert str(wrong / spec.folder) in msg
    assert spec.layout in msg
    assert f"defectlib data download {name}" in msg
    assert "DEFECTLIB_DATA" in msg


def test_load_samples_unknown_dataset_lists_known_names():
    with pytest.raises(DataError) as err:
        load_samples("kolektor_sdd2")
    msg = str(err.value)
    assert "kolektor_sdd2" in msg
    for name in DATASETS:
        assert name in msg
    assert {"kolektorsdd", "magnetictile", "synthetic"} <= set(DATASETS)


def test_load_samples_reads_fake_data_via_registry(tmp_path, isolated):
    make_kolektor(tmp_path / "KolektorSDD")
    make_magnetic(tmp_path / "MagneticTile")
    k = load_samples("kolektorsdd", tmp_path)
    pd.testing.assert_frame_equal(k, kolektor_samples(tmp_path / "KolektorSDD"))
    m = load_samples("magnetictile", tmp_path)
    assert len(m) == len(MT_AREAS) and (m["dataset"] == "magnetictile").all()


def test_make_table_rejects_duplicates_and_missing_columns():
    row = {c: 0 for c in COLUMNS} | {"sample_id": "a"}
    with pytest.raises(DataError, match="duplicate"):
        make_table([row, dict(row)])
    incomplete = {k: v for k, v in row.items() if k != "group"}
    with pytest.raises(DataError, match="group"):
        make_table([incomplete])


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_kolektor() -> pd.DataFrame:
    return load_samples("kolektorsdd", REAL)


@pytest.fixture(scope="module")
def real_magnetic() -> pd.DataFrame:
    return load_samples("magnetictile", REAL)


@needs_kolektor
def test_real_kolektor_counts(real_kolektor):
    t = real_kolektor
    _check_schema(t)
    assert len(t) == 399
    assert int(t["label"].sum()) == 52
    assert t["group"].nunique() == 50
    assert t["defect_class"].value_counts().to_dict() == {"good": 347, "defective": 52}
    assert set(t["group"]) == {f"kos{i:02d}" for i in range(1, 51)}
    assert (t["width"] == 500).all()
    # the data README says 1240-1284; the files themselves span 1235-1285
    assert t["height"].between(1230, 1290).all()
    s = summarize(t)
    assert s["defective_with_empty_mask"] == 0
    assert s["defects_under_100px"] == 0
    assert s["defect_area_quantiles"]["0"] == 790.0
    assert s["defect_area_quantiles"]["0.5"] == 3367.0
    assert s["defect_area_quantiles"]["1"] == 8781.0


@needs_magnetic
def test_real_magnetic_counts(real_magnetic):
    t = real_magnetic
    _check_schema(t)
    assert len(t) == 1344
    assert int(t["label"].sum()) == 392
    assert t["defect_class"].value_counts().to_dict() == {
        "Blowhole": 115,
        "Break": 85,
        "Crack": 57,
        "Fray": 32,
        "Uneven": 103,
        "Free": 952,
    }
    assert t["group"].nunique() == 1344
    assert ((t["defect_class"] == "Free") == (t["label"] == 0)).all()
    empty = t[(t["label"] == 1) & (t["defect_area"] == 0)]
    assert len(empty) == 4 and (empty["defect_class"] == "Uneven").all()
    assert (t.loc[t["label"] == 0, "defect_area"] == 0).all()
    s = summarize(t)
    # the data README says 47; binarised at > 127 the masks give 49 (1..99 px)
    assert s["defects_under_100px"] == 49
    assert s["width_range"] == [103, 632] and s["height_range"] == [222, 403]


# --------------------------------------------------------------------------- SurfaceDataset


def _pair_table(tmp_path: Path) -> pd.DataFrame:
    """Two samples, 64x48 PNG images, with a single-pixel defect and an empty mask."""
    rng = np.random.default_rng(5)
    rows = []
    for i, label in enumerate([1, 0]):
        image = rng.integers(0, 256, (64, 48), dtype=np.uint8)
        mask = np.zeros((64, 48), np.uint8)
        if label:
            mask[32, 24] = 255
        ip, mp = tmp_path / f"img{i}.png", tmp_path / f"img{i}_mask.png"
        cv2.imwrite(str(ip), image)
        cv2.imwrite(str(mp), mask)
        rows.append(
            {
                "sample_id": f"s{i}",
                "dataset": "fake",
                "image_path": str(ip),
                "mask_path": str(mp),
                "label": label,
                "group": f"s{i}",
                "defect_class": "defective" if label else "good",
                "defect_area": int(label),
                "height": 64,
                "width": 48,
            }
        )
    return make_table(rows)


def test_dataset_tensors_at_given_size(tmp_path):
    table = _pair_table(tmp_path)
    ds = SurfaceDataset(table, size=(16, 12))
    assert len(ds) == 2
    for i in range(2):
        item = ds[i]
        assert item["image"].shape == (1, 16, 12) and item["image"].dtype == torch.float32
        assert item["mask"].shape == (1, 16, 12) and item["mask"].dtype == torch.float32
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert item["label"].dtype == torch.long and int(item["label"]) == table.at[i, "label"]
        assert item["index"] == i
    assert ds[0]["mask"].sum() == 1 and ds[1]["mask"].sum() == 0
    # the image is the area-resized grayscale, scaled to [0, 1]
    native = read_gray(table.at[0, "image_path"])
    expected = cv2.resize(native, (12, 16), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    np.testing.assert_allclose(ds[0]["image"][0].numpy(), expected, atol=1e-6)


def test_dataset_native_size(tmp_path):
    table = _pair_table(tmp_path)
    item = SurfaceDataset(table)[0]
    assert item["image"].shape == (1, 64, 48)
    np.testing.assert_allclose(
        item["image"][0].numpy() * 255, read_gray(table.at[0, "image_path"]), atol=1e-3
    )
    assert item["mask"].sum() == 1 and item["mask"][0, 32, 24] == 1


def test_dataset_dilation_happens_before_resize(tmp_path):
    table = _pair_table(tmp_path)
    native = read_mask(table.at[0, "mask_path"])
    # at native resolution the dilated mask is larger than the original
    dilated_native = SurfaceDataset(table, dilation=5)[0]["mask"]
    assert int(dilated_native.sum()) == 25 > int(native.sum()) == 1
    # at the input size: dilate at native resolution, then resize
    got = SurfaceDataset(table, size=(16, 12), dilation=5)[0]["mask"][0].numpy().astype(np.uint8)
    np.testing.assert_array_equal(got, resize_mask(dilate_mask(native, 5), (16, 12)))
    assert int(got.sum()) == 4
    resized_first = dilate_mask(resize_mask(native, (16, 12)), 5)
    assert int(resized_first.sum()) == 25 and not np.array_equal(got, resized_first)
    # load_pair agrees with the dataset
    _, mask = load_pair(table.iloc[0], size=(16, 12), dilation=5)
    np.testing.assert_array_equal(mask, got)


def test_dataset_cache_returns_identical_arrays(tmp_path):
    table = _pair_table(tmp_path)
    ds = SurfaceDataset(table, size=(16, 12), dilation=3, cache=True)
    first_image, first_mask = ds.arrays(0)
    first_item = ds[0]
    # the cached arrays are returned as they are, even once the files are gone
    Path(table.at[0, "image_path"]).unlink()
    Path(table.at[0, "mask_path"]).unlink()
    image, mask = ds.arrays(0)
    assert image is first_image and mask is first_mask
    second_item = ds[0]
    assert torch.equal(first_item["image"], second_item["image"])
    assert torch.equal(first_item["mask"], second_item["mask"])
    # without the cache the files are read again, so the missing file is reported
    uncached = SurfaceDataset(table, size=(16, 12), dilation=3, cache=False)
    with pytest.raises(DataError) as err:
        uncached[0]
    assert table.at[0, "image_path"] in str(err.value)


def test_dataset_uncached_matches_cached(tmp_path):
    table = _pair_table(tmp_path)
    a = SurfaceDataset(table, size=(16, 12), dilation=3, cache=True)
    b = SurfaceDataset(table, size=(16, 12), dilation=3, cache=False)
    for i in range(2):
        ia, ma = a.arrays(i)
        ib, mb = b.arrays(i)
        assert ib is not b.arrays(i)[0]  # re-read each time
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ma, mb)


def test_dataset_transform_and_validation(tmp_path):
    table = _pair_table(tmp_path)
    flip = lambda image, mask: (image.flip(-1), mask.flip(-1))  # noqa: E731
    plain = SurfaceDataset(table)[0]
    flipped = SurfaceDataset(table, transform=flip)[0]
    assert torch.equal(flipped["image"], plain["image"].flip(-1))
    assert flipped["mask"][0, 32, 48 - 1 - 24] == 1
    # a transform must not reach the cached arrays
    ds = SurfaceDataset(table, transform=lambda i, m: (i.mul_(0), m.mul_(0)))
    ds[0]
    assert ds.arrays(0)[1].sum() == 1
    with pytest.raises(DataError):
        SurfaceDataset(table.drop(columns=["mask_path"]))


def test_dataset_on_fake_kolektor_subset(tmp_path):
    table = kolektor_samples(make_kolektor(tmp_path / "KolektorSDD"))
    sub = table[table["group"] == "kos02"]  # index 4, 5 in the full table
    ds = SurfaceDataset(sub, size=(8, 6))
    assert len(ds) == 2
    assert [int(ds[i]["label"]) for i in range(2)] == sub["label"].tolist()
    assert int(ds[0]["mask"].sum()) > 0 and int(ds[1]["mask"].sum()) == 0


def test_fake_datasets_are_independent_copies(tmp_path):
    # guard for the builders themselves: equal pixels give byte-identical JPEGs
    a = make_kolektor(tmp_path / "a")
    b = make_kolektor(tmp_path / "b", mask_ext=".bmp")
    assert (a / "kos01" / "Part1.jpg").read_bytes() == (b / "kos01" / "Part1.jpg").read_bytes()
    shutil.rmtree(a)
    assert len(kolektor_samples(b)) == len(KOS_PARTS)
