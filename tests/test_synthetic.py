"""Tests of the synthetic surface-defect dataset (defectlib.data.synthetic)."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from defectlib.data import synthetic
from defectlib.data.io import read_gray, read_mask
from defectlib.data.samples import COLUMNS, validate_table
from defectlib.data.synthetic import (
    DEFECT_KINDS,
    SURFACE_RANGE,
    SyntheticSpec,
    add_defect,
    spec_folder,
    defective_indices,
    generate_sample,
    make_surface,
    synthetic_samples,
)

SMALL = SyntheticSpec(n_images=12, seed=3)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _relative(table: pd.DataFrame, root: Path) -> pd.DataFrame:
    out = table.copy()
    for col in ("image_path", "mask_path"):
        out[col] = [str(Path(p).relative_to(root)) for p in out[col]]
    return out


def _ring(mask: np.ndarray, width: int = 4) -> np.ndarray:
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    # A gap of one pixel around the defect, then a ring of `width` pixels.
    near = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    return (cv2.dilate(mask, kernel) > 0) & (near == 0)


# ----------------------------------------------------------------------------- the spec


def test_spec_defaults():
    spec = SyntheticSpec()
    assert (spec.n_images, spec.defect_fraction, spec.height, spec.width) == (48, 0.5, 128, 64)
    assert spec.kinds == ("crack", "blob")
    assert spec.crack_thickness == (1, 3)
    assert spec.images_per_group == 4 and spec.seed == 0
    assert spec.n_defective == 24
    with pytest.raises(AttributeError):
        spec.seed = 1  # frozen


def test_spec_normalises_equal_specs_to_one_key():
    a = SyntheticSpec(kinds=["crack"], crack_length=(10, 20), contrast=[-40, -20])
    b = SyntheticSpec(kinds=("crack",), crack_length=(10.0, 20.0), contrast=(-40.0, -20.0))
    assert a == b and a.key() == b.key() and hash(a) == hash(b)
    assert SyntheticSpec(seed=1).key() != SyntheticSpec(seed=2).key()
    assert SyntheticSpec(contrast=(20, 40)).key() != SyntheticSpec().key()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_images": 0}, "n_images"),
        ({"n_images": 2.5}, "n_images"),
        ({"n_images": True}, "n_images"),
        ({"defect_fraction": 1.5}, "defect_fraction"),
        ({"defect_fraction": -0.1}, "defect_fraction"),
        ({"defect_fraction": "half"}, "defect_fraction"),
        ({"height": 8}, "height"),
        ({"width": 0}, "width"),
        ({"kinds": ()}, "kinds"),
        ({"kinds": "crack"}, "kinds"),
        ({"kinds": ("crack", "scratch")}, "kinds"),
        ({"kinds": ("blob", "blob")}, "kinds"),
        ({"crack_length": (30, 10)}, "crack_length"),
        ({"crack_length": (0, 10)}, "crack_length"),
        ({"crack_length": (10,)}, "crack_length"),
        ({"blob_radius": (0.5, 4)}, "blob_radius"),
        ({"blob_radius": (4, 40)}, "blob_radius"),  # more than half the 64-px width
        ({"contrast": (-10, 10)}, "contrast"),
        ({"contrast": (0, 30)}, "contrast"),
        ({"contrast": (-300, -20)}, "contrast"),
        ({"contrast": (float("nan"), 10)}, "contrast"),
        ({"crack_thickness": (0, 2)}, "crack_thickness"),
        ({"crack_thickness": (1.5, 2)}, "crack_thickness"),
        ({"crack_thickness": (3, 1)}, "crack_thickness"),
        ({"images_per_group": 0}, "images_per_group"),
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
    ],
)
def test_invalid_spec_fields_raise_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"SyntheticSpec\.{field}\b"):
        SyntheticSpec(**kwargs)


def test_spec_is_keyword_only():
    with pytest.raises(TypeError):
        SyntheticSpec(48)  # type: ignore[misc]


# ----------------------------------------------------------------------------- pieces


def test_surface_is_textured_and_not_saturated():
    rng = np.random.default_rng(0)
    surfaces = [make_surface(rng, height=128, width=64) for _ in range(10)]
    for s in surfaces:
        assert s.shape == (128, 64) and s.dtype == np.uint8
        assert SURFACE_RANGE[0] <= s.min() and s.max() <= SURFACE_RANGE[1]
        assert 0 < s.min() and s.max() < 255
        assert s.std() > 2.0  # textured, not flat
        # fine texture: neighbouring pixels differ
        assert np.abs(np.diff(s.astype(int), axis=1)).mean() > 0.5
    assert len({s.tobytes() for s in surfaces}) == 10
    assert np.ptp([s.mean() for s in surfaces]) > 5  # brightness varies between images


@pytest.mark.parametrize("kind", sorted(DEFECT_KINDS))
@pytest.mark.parametrize("contrast", [-40, 35])
def test_add_defect_mask_is_exactly_the_changed_pixels(kind, contrast):
    for seed in range(20):
        rng = np.random.default_rng(seed)
        image = make_surface(rng, height=128, width=64)
        before = image.copy()
        out, mask = add_defect(image, rng, kind=kind, size=8 if kind == "blob" else 30,
                               contrast=contrast, thickness=2)
        assert np.array_equal(image, before), "the input image must not be modified"
        assert mask.dtype == np.uint8 and mask.shape == image.shape
        assert set(np.unique(mask).tolist()) == {0, 1}
        assert np.array_equal(out != image, mask == 1)
        diff = out.astype(int) - image.astype(int)
        # constant offset where it is not clipped at 0/255
        inside = diff[mask == 1]
        assert np.all(np.sign(inside) == np.sign(contrast))
        assert np.all(np.abs(inside) <= abs(contrast))


def test_add_defect_on_flat_image_applies_the_contrast_exactly():
    flat = np.full((64, 64), 120, np.uint8)
    for kind in DEFECT_KINDS:
        out, mask = add_defect(flat, np.random.default_rng(1), kind=kind, size=6, contrast=-33.4)
        assert mask.sum() > 0
        assert set(np.unique(out[mask == 1]).tolist()) == {87}
        assert set(np.unique(out[mask == 0]).tolist()) == {120}


def test_add_defect_unknown_kind_lists_known_kinds():
    image = np.full((32, 32), 100, np.uint8)
    with pytest.raises(ValueError, match=r"unknown defect kind 'scratch'; known kinds: crack, blob"):
        add_defect(image, np.random.default_rng(0), kind="scratch", size=4, contrast=-20)


def test_crack_is_thin_and_about_size_long():
    for seed in range(30):
        for length in (20, 40):
            image = np.full((128, 64), 128, np.uint8)
            _, mask = add_defect(image, np.random.default_rng(seed), kind="crack", size=length,
                                 contrast=-50, thickness=1)
            area = int(mask.sum())
            # an 8-connected 1-px polyline covers between length/sqrt(2) and length+1 pixels
            assert 0.5 * length <= area <= length + 2, (seed, length, area)
            # thin: eroding a 1-px line with a 3x3 cross leaves nothing
            assert cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))).sum() == 0


def test_blob_area_is_about_pi_r_squared():
    for radius in (3, 6, 10):
        areas = []
        for seed in range(20):
            image = np.full((128, 64), 128, np.uint8)
            _, mask = add_defect(image, np.random.default_rng(seed), kind="blob", size=radius,
                                 contrast=-50, thickness=1)
            areas.append(mask.sum())
        assert 0.5 * np.pi * radius**2 <= np.mean(areas) <= 1.8 * np.pi * radius**2 + 10, radius


# ----------------------------------------------------------------------------- samples


def test_generate_sample_is_reproducible_alone():
    for index in range(SMALL.n_images):
        a = generate_sample(SMALL, index)
        b = generate_sample(SMALL, index)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    with pytest.raises(IndexError):
        generate_sample(SMALL, SMALL.n_images)
    with pytest.raises(IndexError):
        generate_sample(SMALL, -1)


def test_background_does_not_depend_on_the_defect():
    clean = SyntheticSpec(n_images=8, defect_fraction=0.0)
    dirty = SyntheticSpec(n_images=8, defect_fraction=1.0)
    for index in range(8):
        good, good_mask, _ = generate_sample(clean, index)
        bad, bad_mask, meta = generate_sample(dirty, index)
        assert good_mask.sum() == 0 and bad_mask.sum() > 0 and meta["label"] == 1
        assert np.array_equal(good[bad_mask == 0], bad[bad_mask == 0])


@pytest.mark.parametrize("n, fraction, expected", [
    (10, 0.0, 0), (10, 0.25, 3), (10, 0.5, 5), (10, 1.0, 10), (48, 0.5, 24), (7, 0.5, 4), (1, 0.4, 0),
])
def test_defective_count_matches_fraction(n, fraction, expected):
    spec = SyntheticSpec(n_images=n, defect_fraction=fraction)
    assert spec.n_defective == expected
    assert len(defective_indices(spec)) == expected
    labels = [generate_sample(spec, i)[2]["label"] for i in range(n)]
    assert sum(labels) == expected


def test_defective_sets_are_nested_and_seeded():
    sets = [defective_indices(SyntheticSpec(n_images=20, defect_fraction=f)) for f in (0.2, 0.5, 0.8)]
    assert sets[0] < sets[1] < sets[2]
    assert defective_indices(SyntheticSpec(n_images=20, seed=1)) != defective_indices(
        SyntheticSpec(n_images=20, seed=2))
    assert defective_indices(SyntheticSpec()) != frozenset(range(24))  # a permutation, not a prefix


def test_meta_follows_the_spec():
    spec = SyntheticSpec(n_images=40, crack_length=(20, 30), blob_radius=(4, 5), contrast=(30, 50),
                         crack_thickness=(2, 3), seed=5)
    kinds = set()
    for index in range(spec.n_images):
        _, mask, meta = generate_sample(spec, index)
        if meta["label"] == 0:
            assert meta["kind"] is None and mask.sum() == 0
            continue
        kinds.add(meta["kind"])
        low, high = spec.size_range(meta["kind"])
        assert low <= meta["size"] <= high
        assert 30 <= meta["contrast"] <= 50 and isinstance(meta["contrast"], int)
        if meta["kind"] == "crack":
            assert meta["thickness"] in (2, 3)
        else:
            assert meta["thickness"] is None
    assert kinds == {"crack", "blob"}


def test_defect_size_grows_with_the_size_parameter():
    def mean_area(**kwargs):
        spec = SyntheticSpec(n_images=24, defect_fraction=1.0, **kwargs)
        return np.mean([generate_sample(spec, i)[1].sum() for i in range(spec.n_images)])

    small_cracks = mean_area(kinds=("crack",), crack_length=(10, 10), crack_thickness=(1, 1))
    large_cracks = mean_area(kinds=("crack",), crack_length=(50, 50), crack_thickness=(1, 1))
    assert large_cracks > 3 * small_cracks
    small_blobs = mean_area(kinds=("blob",), blob_radius=(3, 3))
    large_blobs = mean_area(kinds=("blob",), blob_radius=(9, 9))
    assert large_blobs > 5 * small_blobs
    thin = mean_area(kinds=("crack",), crack_length=(40, 40), crack_thickness=(1, 1))
    thick = mean_area(kinds=("crack",), crack_length=(40, 40), crack_thickness=(3, 3))
    assert thick > 1.8 * thin


@pytest.mark.parametrize("contrast", [-45, 40])
def test_contrast_is_applied_against_the_surrounding_ring(contrast):
    spec = SyntheticSpec(n_images=16, defect_fraction=1.0, kinds=("blob",), blob_radius=(5, 8),
                         contrast=(contrast, contrast))
    differences = []
    for index in range(spec.n_images):
        image, mask, meta = generate_sample(spec, index)
        assert meta["contrast"] == contrast
        ring = _ring(mask)
        differences.append(image[mask == 1].mean() - image[ring].mean())
    # each defect stands out by roughly the contrast (the texture adds a few gray levels)
    assert abs(np.mean(differences) - contrast) < 6
    assert all(abs(d - contrast) < 15 for d in differences)
    assert all(np.sign(d) == np.sign(contrast) for d in differences)


# ----------------------------------------------------------------------------- on disk


def test_table_layout_and_schema(tmp_path):
    table = synthetic_samples(tmp_path, spec=SMALL)
    validate_table(table)
    assert tuple(table.columns) == COLUMNS
    folder = tmp_path / SMALL.key()
    assert spec_folder(SMALL, tmp_path) == folder
    assert table["sample_id"].tolist() == [f"img_{i:04d}" for i in range(SMALL.n_images)]
    assert (table["dataset"] == "synthetic").all()
    assert (table["height"] == 128).all() and (table["width"] == 64).all()
    for col in ("label", "defect_area", "height", "width"):
        assert table[col].dtype == np.int64
    for i, row in table.iterrows():
        assert Path(row.image_path).is_absolute() and Path(row.mask_path).is_absolute()
        assert row.image_path == str(folder / f"img_{i:04d}.png")
        assert row.mask_path == str(folder / f"img_{i:04d}_mask.png")
        assert row.group == f"part{i // 4:03d}"
    assert table["label"].sum() == SMALL.n_defective
    assert set(table["defect_class"]) <= {"good", "crack", "blob"}
    assert ((table["label"] == 0) == (table["defect_class"] == "good")).all()
    assert (tmp_path / SMALL.key() / "spec.json").is_file()
    records = json.loads((folder / "samples.json").read_text())
    assert [r["sample_id"] for r in records] == table["sample_id"].tolist()
    assert all({"kind", "size", "contrast", "thickness"} <= set(r) for r in records)


def test_masks_are_binary_the_image_size_and_match_labels(tmp_path):
    table = synthetic_samples(tmp_path, spec=SMALL)
    for row in table.itertuples():
        image = read_gray(row.image_path)
        raw = cv2.imread(row.mask_path, cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint8 and raw.ndim == 2 and raw.shape == image.shape
        assert set(np.unique(raw).tolist()) <= {0, 255}
        mask = read_mask(row.mask_path, shape=image.shape)
        assert int(mask.sum()) == row.defect_area
        if row.label:
            assert row.defect_area > 0 and row.defect_class in DEFECT_KINDS
        else:
            assert row.defect_area == 0 and row.defect_class == "good"
        expected_image, expected_mask, _ = generate_sample(SMALL, int(row.sample_id[4:]))
        assert np.array_equal(image, expected_image) and np.array_equal(mask, expected_mask)


def test_same_spec_gives_byte_identical_files_and_equal_tables(tmp_path):
    a = synthetic_samples(tmp_path / "a", spec=SMALL)
    b = synthetic_samples(tmp_path / "b", spec=SMALL)
    files_a = _files(tmp_path / "a" / SMALL.key())
    files_b = _files(tmp_path / "b" / SMALL.key())
    assert files_a.keys() == files_b.keys() and len(files_a) == 2 * SMALL.n_images + 2
    assert files_a == files_b
    pd.testing.assert_frame_equal(_relative(a, tmp_path / "a"), _relative(b, tmp_path / "b"))


def test_different_seed_gives_different_images_and_folder(tmp_path):
    other = SyntheticSpec(n_images=SMALL.n_images, seed=SMALL.seed + 1)
    synthetic_samples(tmp_path, spec=SMALL)
    synthetic_samples(tmp_path, spec=other)
    assert SMALL.key() != other.key()
    files_a = _files(tmp_path / SMALL.key())
    files_b = _files(tmp_path / other.key())
    for name in files_a:
        if name.endswith(".png") and not name.endswith("_mask.png"):
            assert files_a[name] != files_b[name], name


def test_groups_hold_images_per_group_images(tmp_path):
    spec = SyntheticSpec(n_images=14, images_per_group=3)
    table = synthetic_samples(tmp_path, spec=spec)
    counts = table.groupby("group").size()
    assert counts.index.tolist() == [f"part{g:03d}" for g in range(5)]
    assert counts.tolist() == [3, 3, 3, 3, 2]
    # consecutive images share a group
    for group, rows in table.groupby("group"):
        indices = sorted(int(s[4:]) for s in rows["sample_id"])
        assert indices == list(range(indices[0], indices[0] + len(indices)))


def test_recall_reuses_the_files(tmp_path, monkeypatch):
    first = synthetic_samples(tmp_path, spec=SMALL)
    folder = tmp_path / SMALL.key()
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    def refuse(*args, **kwargs):
        raise AssertionError("a complete dataset must not be written again")

    monkeypatch.setattr(synthetic, "_write_png", refuse)
    monkeypatch.setattr(synthetic, "generate_sample", refuse)
    second = synthetic_samples(tmp_path, spec=SMALL)
    pd.testing.assert_frame_equal(first, second)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes


def test_interrupted_generation_leaves_no_dataset_and_next_call_succeeds(tmp_path, monkeypatch):
    real_write = synthetic._write_png
    final = tmp_path / SMALL.key()
    calls = {"n": 0}

    def flaky_write(path, array):
        calls["n"] += 1
        # files are written outside the final folder, which appears only when complete
        assert Path(path).parent != final and not final.exists()
        if calls["n"] == 7:
            raise KeyboardInterrupt("simulated interruption")
        real_write(path, array)

    monkeypatch.setattr(synthetic, "_write_png", flaky_write)
    with pytest.raises(KeyboardInterrupt):
        synthetic_samples(tmp_path, spec=SMALL)
    assert calls["n"] == 7
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is cleaned up

    monkeypatch.setattr(synthetic, "_write_png", real_write)
    table = synthetic_samples(tmp_path, spec=SMALL)
    validate_table(table)
    assert [p.name for p in tmp_path.iterdir()] == [SMALL.key()]
    reference = synthetic_samples(tmp_path / "ref", spec=SMALL)
    assert _files(final) == _files(tmp_path / "ref" / SMALL.key())
    pd.testing.assert_frame_equal(_relative(table, tmp_path), _relative(reference, tmp_path / "ref"))


def test_killed_generation_without_cleanup_leaves_no_dataset(tmp_path, monkeypatch):
    """A process killed outright runs no cleanup: still no final folder, and a later call works."""
    real_write = synthetic._write_png
    calls = {"n": 0}

    def flaky_write(path, array):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("killed")
        real_write(path, array)

    monkeypatch.setattr(synthetic, "_write_png", flaky_write)
    monkeypatch.setattr(synthetic.shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(RuntimeError):
        synthetic_samples(tmp_path, spec=SMALL)
    assert not (tmp_path / SMALL.key()).exists()
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".")  # a hidden temporary folder
    monkeypatch.undo()
    table = synthetic_samples(tmp_path, spec=SMALL)
    assert all(Path(p).is_file() for p in table["image_path"])
    assert len(json.loads((tmp_path / SMALL.key() / "samples.json").read_text())) == SMALL.n_images


def test_incomplete_folder_is_regenerated(tmp_path):
    synthetic_samples(tmp_path, spec=SMALL)
    folder = tmp_path / SMALL.key()
    reference = _files(folder)
    (folder / "img_0003_mask.png").unlink()
    table = synthetic_samples(tmp_path, spec=SMALL)
    assert _files(folder) == reference
    assert Path(table.loc[3, "mask_path"]).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [SMALL.key()]  # the stale copy is gone


def test_default_root_is_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFECTLIB_CACHE", str(tmp_path / "cache"))
    spec = SyntheticSpec(n_images=4)
    table = synthetic_samples(spec=spec)
    folder = tmp_path / "cache" / "synthetic" / spec.key()
    assert folder.is_dir()
    assert table["image_path"].str.startswith(str(folder)).all()


def test_docstring_examples():
    result = doctest.testmod(synthetic, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
