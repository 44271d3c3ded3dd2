"""Tests of grouped, stratified, seeded folds and their manifests (defectlib.data.folds),
and of the dataset statistics (defectlib.data.summary)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from defectlib.data import load_samples
from defectlib.data.folds import (
    MANIFEST_COLUMNS,
    assign_folds,
    content_hashes,
    data_checksum,
    ensure_folds,
    read_manifest,
)
from defectlib.data.kolektor import kolektor_samples
from defectlib.data.summary import QUANTILES, areas_at_size, summarize
from defectlib.errors import DataError


from helpers import REAL  # noqa: E402


# --------------------------------------------------------------------------- tables


def synthetic_table(n_groups: int = 24) -> pd.DataFrame:
    """Groups of 2-5 images; two groups in three hold one defective image."""
    rows = []
    for g in range(n_groups):
        for i in range(2 + g % 4):
            defective = i == 0 and g % 3 != 2
            rows.append(
                {
                    "sample_id": f"g{g:02d}/{i}",
                    "group": f"g{g:02d}",
                    "defect_class": "defective" if defective else "good",
                    "label": int(defective),
                }
            )
    return pd.DataFrame(rows)


def make_kolektor(root: Path, *, n_groups: int = 6, mask_ext: str = ".png") -> Path:
    """A tiny KolektorSDD (kosNN/PartM.jpg + PartM_label<ext>); Part0 of each folder defective."""
    rng = np.random.default_rng(0)
    for g in range(1, n_groups + 1):
        d = root / f"kos{g:02d}"
        d.mkdir(parents=True)
        for part in range(3):
            cv2.imwrite(str(d / f"Part{part}.jpg"), rng.integers(0, 256, (16, 10), dtype=np.uint8))
            mask = np.zeros((16, 10), np.uint8)
            if part == 0:
                mask[2 : 4 + g, 3:6] = 255
            cv2.imwrite(str(d / f"Part{part}_label{mask_ext}"), mask)
    return root


@pytest.fixture
def fake(tmp_path) -> pd.DataFrame:
    return kolektor_samples(make_kolektor(tmp_path / "KolektorSDD"))


@pytest.fixture(scope="module")
def real_kolektor() -> pd.DataFrame:
    if not (REAL / "KolektorSDD").is_dir():
        pytest.skip(f"real KolektorSDD not at {REAL}")
    return load_samples("kolektorsdd", REAL)


def _check_folds(table: pd.DataFrame, folds: np.ndarray, k: int) -> None:
    assert folds.shape == (len(table),)
    assert sorted(set(folds.tolist())) == list(range(k))
    # no group in two folds
    per_group = pd.Series(folds).groupby(table["group"].to_numpy()).nunique()
    assert (per_group == 1).all(), per_group[per_group > 1]
    # every fold has defective images
    defective = folds[table["defect_class"].to_numpy() == "defective"]
    assert (np.bincount(defective, minlength=k) > 0).all()
    # each class within one group-size of its equal share in every fold
    max_group = table["group"].value_counts().max()
    for cls, total in table["defect_class"].value_counts().items():
        counts = np.bincount(folds[table["defect_class"].to_numpy() == cls], minlength=k)
        assert np.abs(counts - total / k).max() <= max_group, (cls, counts, total)


# --------------------------------------------------------------------------- assign_folds


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_assign_folds_grouped_and_stratified(k, seed):
    table = synthetic_table()
    _check_folds(table, assign_folds(table, n_folds=k, seed=seed), k)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_assign_folds_real_kolektor(real_kolektor, seed):
    folds = assign_folds(real_kolektor, n_folds=3, seed=seed)
    _check_folds(real_kolektor, folds, 3)
    assert folds.dtype == np.int64


def test_assign_folds_deterministic_per_seed():
    table = synthetic_table()
    a = assign_folds(table, n_folds=3, seed=11)
    b = assign_folds(table.copy(), n_folds=3, seed=11)
    np.testing.assert_array_equal(a, b)


def test_assign_folds_different_seed_differs():
    table = synthetic_table()
    a = assign_folds(table, n_folds=3, seed=0)
    assert any(not np.array_equal(a, assign_folds(table, n_folds=3, seed=s)) for s in (1, 2))
    assert not np.array_equal(a, assign_folds(table, n_folds=3, seed=1))


def test_assign_folds_ignores_the_table_index():
    table = synthetic_table()
    shifted = table.set_index(pd.Index(np.arange(len(table))[::-1] + 1000))
    np.testing.assert_array_equal(
        assign_folds(table, n_folds=3, seed=4), assign_folds(shifted, n_folds=3, seed=4)
    )


@pytest.mark.parametrize("k", [1, 0, -2])
def test_assign_folds_rejects_fewer_than_two_folds(k):
    with pytest.raises(ValueError):
        assign_folds(synthetic_table(), n_folds=k, seed=0)


def test_assign_folds_too_few_groups():
    table = synthetic_table(n_groups=3)
    with pytest.raises(DataError, match="3 groups"):
        assign_folds(table, n_folds=5, seed=0)


# --------------------------------------------------------------------------- ensure_folds


def test_ensure_folds_writes_named_manifest(fake, tmp_path):
    folder = tmp_path / "folds"
    m = ensure_folds("kolektorsdd", fake, n_folds=3, seed=7, root=folder)
    checksum = data_checksum(content_hashes(fake))
    assert m.path == folder / f"kolektorsdd-k3-seed7-{checksum[:12]}.csv"
    assert re.fullmatch(r"kolektorsdd-k3-seed7-[0-9a-f]{12}\.csv", m.path.name)
    assert [p.name for p in folder.iterdir()] == [m.path.name]  # no temporary left over
    assert m.data_checksum == checksum
    assert (m.n_folds, m.seed) == (3, 7)
    raw = m.path.read_bytes()
    assert m.sha256 == hashlib.sha256(raw).hexdigest()
    assert raw.decode().splitlines()[0] == ",".join(MANIFEST_COLUMNS)
    assert tuple(m.table.columns) == MANIFEST_COLUMNS
    on_disk = pd.read_csv(m.path, dtype={"sample_id": str, "group": str})
    assert on_disk["sample_id"].tolist() == fake["sample_id"].tolist()
    np.testing.assert_array_equal(on_disk["fold"], assign_folds(fake, n_folds=3, seed=7))
    assert on_disk["label"].tolist() == fake["label"].tolist()
    assert on_disk["group"].tolist() == fake["group"].tolist()
    # image hashes are of the file bytes
    for sid, path in zip(fake["sample_id"], fake["image_path"]):
        expected = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        assert on_disk.set_index("sample_id").at[sid, "image_sha256"] == expected


def test_ensure_folds_second_call_reads_the_same_file(fake, tmp_path):
    folder = tmp_path / "folds"
    first = ensure_folds("kolektorsdd", fake, n_folds=3, seed=7, root=folder)
    old = 1_000_000_000
    os.utime(first.path, ns=(old * 10**9, old * 10**9))
    second = ensure_folds("kolektorsdd", fake, n_folds=3, seed=7, root=folder)
    assert second.path == first.path
    assert first.path.stat().st_mtime_ns == old * 10**9  # not rewritten
    assert second.sha256 == first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    pd.testing.assert_frame_equal(second.table, first.table)
    assert len(list(folder.iterdir())) == 1


def test_ensure_folds_is_pinned_by_the_file_not_recomputed(fake, tmp_path):
    # a committed manifest wins over whatever the splitter would say today
    folder = tmp_path / "folds"
    m = ensure_folds("kolektorsdd", fake, n_folds=3, seed=7, root=folder)
    text = m.path.read_text()
    table = pd.read_csv(m.path, dtype={"sample_id": str, "group": str})
    table["fold"] = (table["fold"] + 1) % 3
    table.to_csv(m.path, index=False, lineterminator="\n")
    again = ensure_folds("kolektorsdd", fake, n_folds=3, seed=7, root=folder)
    np.testing.assert_array_equal(again.table["fold"], table["fold"])
    assert m.path.read_text() != text


def test_ensure_folds_other_seed_or_k_other_file(fake, tmp_path):
    folder = tmp_path / "folds"
    a = ensure_folds("kolektorsdd", fake, n_folds=3, seed=7, root=folder)
    b = ensure_folds("kolektorsdd", fake, n_folds=3, seed=8, root=folder)
    c = ensure_folds("kolektorsdd", fake, n_folds=2, seed=7, root=folder)
    assert len({a.path, b.path, c.path}) == 3
    assert a.data_checksum == b.data_checksum == c.data_checksum
    assert c.n_folds == 2 and set(c.table["fold"]) == {0, 1}


def test_ensure_folds_default_root_is_results(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("DEFECTLIB_RESULTS", str(tmp_path / "results"))
    m = ensure_folds("kolektorsdd", fake, n_folds=3, seed=0)
    assert m.path.parent == (tmp_path / "results" / "folds").resolve()
    assert m.path.is_file()


def test_bmp_and_png_masks_give_the_same_checksum(tmp_path):
    png = kolektor_samples(make_kolektor(tmp_path / "png", mask_ext=".png"))
    bmp = kolektor_samples(make_kolektor(tmp_path / "bmp", mask_ext=".bmp"))
    assert Path(bmp.at[0, "mask_path"]).read_bytes() != Path(png.at[0, "mask_path"]).read_bytes()
    assert data_checksum(content_hashes(png)) == data_checksum(content_hashes(bmp))
    a = ensure_folds("kolektorsdd", png, n_folds=3, seed=1, root=tmp_path / "f1")
    b = ensure_folds("kolektorsdd", bmp, n_folds=3, seed=1, root=tmp_path / "f2")
    assert a.path.name == b.path.name
    assert a.sha256 == b.sha256


def test_changing_one_image_changes_the_checksum(tmp_path):
    root = make_kolektor(tmp_path / "KolektorSDD")
    folder = tmp_path / "folds"
    before = ensure_folds("kolektorsdd", kolektor_samples(root), n_folds=3, seed=0, root=folder)
    image = root / "kos04" / "Part2.jpg"
    pixels = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    pixels[0, 0] ^= 0xFF
    cv2.imwrite(str(image), pixels)
    with pytest.raises(DataError) as err:  # changed data is not split anew unless asked
        ensure_folds("kolektorsdd", kolektor_samples(root), n_folds=3, seed=0, root=folder)
    assert "image changed: kos04/Part2.jpg" in str(err.value) and "--new-split" in str(err.value)
    assert len(list(folder.iterdir())) == 1
    after = ensure_folds("kolektorsdd", kolektor_samples(root), n_folds=3, seed=0, root=folder,
                         allow_new_split=True)
    assert after.data_checksum != before.data_checksum
    assert after.path != before.path
    assert before.path.is_file() and after.path.is_file()
    changed = before.table.set_index("sample_id")["image_sha256"] != after.table.set_index(
        "sample_id"
    )["image_sha256"]
    assert changed[changed].index.tolist() == ["kos04/Part2"]


def test_changing_one_mask_changes_the_checksum(tmp_path):
    root = make_kolektor(tmp_path / "KolektorSDD")
    before = data_checksum(content_hashes(kolektor_samples(root)))
    mask = root / "kos02" / "Part1_label.png"
    m = np.zeros((16, 10), np.uint8)
    m[5, 5] = 255
    cv2.imwrite(str(mask), m)
    assert data_checksum(content_hashes(kolektor_samples(root))) != before


def test_manifest_that_does_not_match_its_name_is_an_error(fake, tmp_path):
    folder = tmp_path / "folds"
    m = ensure_folds("kolektorsdd", fake, n_folds=3, seed=7, root=folder)
    table = pd.read_csv(m.path, dtype={"sample_id": str, "group": str})
    table.loc[0, "image_sha256"] = "0" * 64
    table.to_csv(m.path, index=False, lineterminator="\n")
    with pytest.raises(DataError) as err:
        ensure_folds("kolektorsdd", fake, n_folds=3, seed=7, root=folder)
    assert str(m.path) in str(err.value)


def test_read_manifest_rejects_other_csv(tmp_path):
    path = tmp_path / "kolektorsdd-k3-seed0-abcdefabcdef.csv"
    path.write_text("sample_id,fold\na,0\n")
    with pytest.raises(DataError) as err:
        read_manifest(path)
    assert str(path) in str(err.value)


def test_folds_of(fake, tmp_path):
    m = ensure_folds("kolektorsdd", fake, n_folds=3, seed=7, root=tmp_path / "folds")
    expected = dict(zip(m.table["sample_id"], m.table["fold"]))
    np.testing.assert_array_equal(m.folds_of(fake), [expected[s] for s in fake["sample_id"]])
    subset = fake.iloc[[7, 2, 11]]
    np.testing.assert_array_equal(m.folds_of(subset), [expected[s] for s in subset["sample_id"]])
    # a different read of the same file gives the same folds
    np.testing.assert_array_equal(read_manifest(m.path).folds_of(fake), m.folds_of(fake))
    unknown = pd.concat([fake.iloc[:2], fake.iloc[:1].assign(sample_id="kos99/Part0")])
    with pytest.raises(DataError) as err:
        m.folds_of(unknown)
    assert "kos99/Part0" in str(err.value) and str(m.path) in str(err.value)


# --------------------------------------------------------------------------- summarize


def _hand_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": list("abcdef"),
            "label": [1, 1, 1, 0, 1, 0],
            "group": ["g1", "g1", "g2", "g3", "g4", "g4"],
            "defect_class": ["Crack", "Crack", "Blowhole", "Free", "Uneven", "Free"],
            "defect_area": [50, 0, 400, 0, 150, 0],
            "height": [10, 12, 30, 10, 15, 11],
            "width": [20, 20, 8, 9, 15, 25],
        }
    )


def test_summarize_hand_computed():
    s = summarize(_hand_table())
    assert s["images"] == 6
    assert s["defective"] == 4
    assert s["defect_free"] == 2
    assert s["groups"] == 4
    assert s["classes"] == {"Blowhole": 1, "Crack": 2, "Free": 2, "Uneven": 1}
    assert list(s["classes"]) == ["Blowhole", "Crack", "Free", "Uneven"]
    assert s["defective_with_empty_mask"] == 1
    assert s["defects_under_100px"] == 1
    assert s["height_range"] == [10, 30]
    assert s["width_range"] == [8, 25]
    # areas of defective images with a non-empty mask: 50, 150, 400 (linear interpolation)
    assert s["defect_area_quantiles"] == {
        "0": 50.0,
        "0.1": 70.0,
        "0.25": 100.0,
        "0.5": 150.0,
        "0.75": 275.0,
        "0.9": 350.0,
        "1": 400.0,
    }
    assert list(s["defect_area_quantiles"]) == [f"{q:g}" for q in QUANTILES]
    json.dumps(s)  # JSON-ready: plain ints and floats


def test_summarize_without_defects():
    t = _hand_table().assign(label=0, defect_area=0)
    s = summarize(t, quantiles=(0.5,))
    assert s["defective"] == 0 and s["defect_free"] == 6
    assert s["defect_area_quantiles"] == {"0.5": None}
    json.dumps(s)


def test_areas_at_size(tmp_path):
    crack = np.zeros((8, 8), np.uint8)
    crack[:, 3] = 255
    cv2.imwrite(str(tmp_path / "crack.png"), crack)
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros((8, 8), np.uint8))
    table = pd.DataFrame(
        {
            "mask_path": [str(tmp_path / "crack.png"), str(tmp_path / "empty.png")],
            "defect_area": [8, 0],
        }
    )
    areas = areas_at_size(table, (4, 4))
    assert areas.dtype == np.int64
    assert areas.tolist() == [4, 0]


def test_committed_kolektor_manifests_keep_repeated_images_in_one_fold():
    """Every set of byte-identical images sits in one group, hence one fold, of each manifest."""
    folder = Path(__file__).resolve().parents[1] / "book" / "results" / "folds"
    manifests = sorted(folder.glob("kolektorsdd-k*-seed*-*.csv"))
    assert manifests
    for path in manifests:
        table = pd.read_csv(path, dtype={"sample_id": str, "group": str})
        repeated = table[table.duplicated("image_sha256", keep=False)]
        assert len(repeated) > 0  # the copy the study uses repeats images (the data chapter says so)
        for digest, rows in repeated.groupby("image_sha256"):
            assert rows["group"].nunique() == 1 and rows["fold"].nunique() == 1, (path.name, digest)


def test_linked_groups_merge_transitively_and_leave_others_alone():
    from defectlib.data.folds import linked_groups

    groups = linked_groups(["k1", "k1", "k2", "k3", "k4", "k5"], ["a", "b", "b", "c", "c", "d"])
    assert groups.tolist() == ["k1+k2", "k1+k2", "k1+k2", "k3+k4", "k3+k4", "k5"]
