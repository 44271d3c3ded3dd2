"""Tests of mask dilation, mask resizing and mask reading (defectlib.data.masks, .io)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from defectlib.data.io import read_gray, read_mask
from defectlib.data.masks import dilate_mask, resize_mask
from defectlib.errors import DataError


def _dot(shape=(21, 21), at=(10, 10), value=1) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[at] = value
    return mask


# --------------------------------------------------------------------------- dilate_mask


@pytest.mark.parametrize("k", [3, 5, 9, 13, 15])
def test_single_pixel_becomes_centred_k_by_k_square(k):
    out = dilate_mask(_dot(), k)
    half = k // 2
    expected = np.zeros((21, 21), np.uint8)
    expected[10 - half : 10 + half + 1, 10 - half : 10 + half + 1] = 1
    np.testing.assert_array_equal(out, expected)
    assert int(out.sum()) == k * k


def test_two_pixels_dilate_to_union_of_squares():
    mask = np.zeros((15, 15), np.uint8)
    mask[3, 3] = mask[3, 6] = 1  # squares of k=3 touch: columns 2..7
    out = dilate_mask(mask, 3)
    assert int(out.sum()) == 3 * 6
    assert out[2:5, 2:8].all()
    assert out[:, 8:].sum() == 0 and out[5:, :].sum() == 0


@pytest.mark.parametrize("k", [0, 1])
def test_k0_and_k1_are_identity(k):
    rng = np.random.default_rng(0)
    mask = (rng.random((9, 13)) > 0.7).astype(np.uint8)
    out = dilate_mask(mask, k)
    np.testing.assert_array_equal(out, mask)
    assert out.dtype == np.uint8


@pytest.mark.parametrize("k", [0, 1, 5])
def test_result_is_binary_uint8_whatever_the_input_values(k):
    mask = np.zeros((11, 11), np.uint8)
    mask[5, 5] = 255
    mask[1, 1] = 7
    for m in (mask, mask.astype(bool), mask.astype(np.float32)):
        out = dilate_mask(m, k)
        assert out.dtype == np.uint8
        assert out.shape == (11, 11)
        assert set(np.unique(out).tolist()) == {0, 1}
    # k = 0 binarises nonzero to 1 and keeps zeros
    np.testing.assert_array_equal(dilate_mask(mask, 0), (mask > 0).astype(np.uint8))


def test_border_clipping():
    out = dilate_mask(_dot((10, 12), (0, 0)), 5)
    assert out.shape == (10, 12)
    assert int(out.sum()) == 9  # 3x3 quarter of the 5x5 square
    assert out[:3, :3].all()
    # the opposite corner, with a non-square image
    out = dilate_mask(_dot((10, 12), (9, 11)), 5)
    assert int(out.sum()) == 9
    assert out[7:, 9:].all()
    # an edge pixel (not a corner): 3 rows x 5 columns
    out = dilate_mask(_dot((10, 12), (0, 6)), 5)
    assert int(out.sum()) == 15
    assert out[:3, 4:9].all()


@pytest.mark.parametrize("k", [2, 4, 6, 14])
def test_rejects_even_kernel(k):
    with pytest.raises(ValueError, match="odd"):
        dilate_mask(_dot(), k)


@pytest.mark.parametrize("k", [-1, -3, -5])
def test_rejects_negative_kernel(k):
    with pytest.raises(ValueError):
        dilate_mask(_dot(), k)


@pytest.mark.parametrize("k", [3.0, "3", None])
def test_rejects_non_integer_kernel(k):
    with pytest.raises(ValueError):
        dilate_mask(_dot(), k)


def test_accepts_numpy_integer_kernel():
    assert int(dilate_mask(_dot(), np.int64(3)).sum()) == 9


@pytest.mark.parametrize("shape", [(5,), (4, 4, 1), (4, 4, 3), (2, 3, 4, 5)])
def test_rejects_non_2d(shape):
    with pytest.raises(ValueError, match="2-D"):
        dilate_mask(np.zeros(shape, np.uint8), 3)


@pytest.mark.parametrize("k", [0, 1, 5])
def test_does_not_modify_its_input(k):
    mask = _dot(value=255)
    mask[0, 0] = 3
    before = mask.copy()
    out = dilate_mask(mask, k)
    np.testing.assert_array_equal(mask, before)
    # the result is a new array: writing into it leaves the input alone
    out[:] = 1
    np.testing.assert_array_equal(mask, before)


# --------------------------------------------------------------------------- resize_mask


def test_resize_keeps_one_pixel_vertical_crack_when_shrinking():
    mask = np.zeros((300, 300), np.uint8)
    mask[:, 137] = 1
    out = resize_mask(mask, (64, 64))
    assert out.shape == (64, 64) and out.dtype == np.uint8
    # every output row still sees the crack, in one or two adjacent columns
    assert (out.sum(axis=1) >= 1).all()
    cols = np.flatnonzero(out.sum(axis=0))
    assert 1 <= len(cols) <= 2 and cols.max() - cols.min() <= 1
    assert abs(cols.mean() - 137 * 64 / 300) < 1.5
    # nearest-neighbour would have lost it: the test exercises the thin-defect case
    nearest = cv2.resize(mask, (64, 64), interpolation=cv2.INTER_NEAREST)
    assert nearest.sum() < out.sum()


def test_resize_keeps_one_pixel_diagonal_crack_and_single_pixel():
    mask = np.zeros((500, 480), np.uint8)
    idx = np.arange(480)
    mask[idx, idx] = 1
    mask[490, 7] = 1  # an isolated pixel
    out = resize_mask(mask, (224, 224))
    assert (out[:200].sum(axis=1) >= 1).all()  # the diagonal crosses rows 0..~215
    assert (out.sum(axis=0) >= 1).all()
    assert out[int(490 * 224 / 500), int(7 * 224 / 480)] == 1


def test_resize_shape_is_height_width_and_binary():
    mask = np.zeros((40, 30), np.uint8)
    mask[10:20, 5:15] = 255
    out = resize_mask(mask, (10, 20))
    assert out.shape == (10, 20)
    assert set(np.unique(out).tolist()) == {0, 1}


def test_resize_empty_mask_stays_empty():
    assert resize_mask(np.zeros((100, 80), np.uint8), (17, 13)).sum() == 0


def test_resize_integer_factor_block_semantics():
    # 8x8 -> 4x4: output pixel is 1 iff any pixel of its 2x2 block is
    mask = np.zeros((8, 8), np.uint8)
    mask[0, 1] = mask[5, 6] = 1
    expected = np.zeros((4, 4), np.uint8)
    expected[0, 0] = expected[2, 3] = 1
    np.testing.assert_array_equal(resize_mask(mask, (4, 4)), expected)


# --------------------------------------------------------------------------- read_mask / read_gray


@pytest.mark.parametrize("ext", [".png", ".bmp"])
def test_read_mask_binarises_above_127(tmp_path, ext):
    values = np.array([[0, 1, 100, 127], [128, 129, 200, 255]], np.uint8)
    path = tmp_path / f"m{ext}"
    assert cv2.imwrite(str(path), values)
    mask = read_mask(path)
    assert mask.dtype == np.uint8
    assert mask.tolist() == [[0, 0, 0, 0], [1, 1, 1, 1]]


def test_read_mask_shape_check(tmp_path):
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), np.zeros((6, 4), np.uint8))
    assert read_mask(path, shape=(6, 4)).shape == (6, 4)
    for wrong in [(4, 6), (6, 5), (7, 4)]:
        with pytest.raises(DataError) as err:
            read_mask(path, shape=wrong)
        assert str(path) in str(err.value)


def test_read_mask_missing_and_corrupt_name_the_file(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(DataError) as err:
        read_mask(missing)
    assert str(missing) in str(err.value)
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"\x89PNG not really a png at all")
    with pytest.raises(DataError) as err:
        read_mask(corrupt)
    assert str(corrupt) in str(err.value)


def test_read_gray_returns_2d_uint8_for_colour_file(tmp_path):
    path = tmp_path / "c.png"
    colour = np.zeros((5, 7, 3), np.uint8)
    colour[..., 2] = 255
    cv2.imwrite(str(path), colour)
    gray = read_gray(path)
    assert gray.shape == (5, 7) and gray.dtype == np.uint8
    assert 0 < int(gray[0, 0]) < 255
