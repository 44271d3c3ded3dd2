"""Reading images and masks, with errors that name the file.

Images are read as 2-D ``uint8`` grayscale arrays. Masks are read by one stated rule,
:func:`mask_from_pixels`, whatever their encoding, so a mask is always a ``uint8`` array of
0 and 1 (1 = defect):

* a colour mask counts a pixel by its brightest colour channel (alpha is ignored), so a
  red-only mask reads like a grey one;
* a mask with a single non-zero value (0/255, 0/1, 0/100, 16-bit 0/200, ...) is defect
  wherever it is not zero;
* a mask with several non-zero values (soft, anti-aliased edges, as MagneticTile's) is defect
  above half of its scale: ``> 127`` when every value fits in 8 bits, ``> 32767`` otherwise;
* a soft mask with no value above half of its scale is refused with its name, never read as
  empty; so is a mask that is not 8- or 16-bit integers.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError


def read_gray(path: str | Path) -> np.ndarray:
    """Read an image file as a 2-D ``uint8`` grayscale array.

    Raises
    ------
    DataError
        If the file is missing or cannot be decoded (corrupt or not an image).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None or image.size == 0:
        raise DataError(f"{path}: cannot decode the image (corrupt or not an image file)")
    return image


def mask_levels(pixels: np.ndarray) -> np.ndarray:
    """The distinct non-zero values of a 2-D integer array, sorted.

    Examples
    --------
    >>> mask_levels(np.array([[0, 3], [3, 200]], np.uint8)).tolist()
    [3, 200]
    """
    if pixels.dtype == np.uint8:
        counts = np.bincount(pixels.ravel(), minlength=256)
        return np.flatnonzero(counts[1:]) + 1
    levels = np.unique(pixels)
    return levels[levels != 0]


def mask_from_pixels(pixels: np.ndarray) -> np.ndarray:
    """The binary mask (``uint8``, 1 = defect) that a decoded mask image stands for.

    Parameters
    ----------
    pixels
        The mask as decoded, unchanged: 2-D, or 3-D with colour channels last (BGR or BGRA
        as OpenCV reads them), 8- or 16-bit unsigned integers.

    Returns
    -------
    numpy.ndarray
        A 2-D ``uint8`` array of 0 and 1, by the rule in this module's docstring.

    Raises
    ------
    ValueError
        For a mask that is not 8- or 16-bit integers, or a soft mask with no value above
        half of its scale (which the rule cannot read without guessing).

    Examples
    --------
    >>> mask_from_pixels(np.array([[0, 1], [1, 0]], np.uint8)).tolist()       # 0/1
    [[0, 1], [1, 0]]
    >>> mask_from_pixels(np.array([[0, 100, 200, 255]], np.uint8)).tolist()  # soft edges
    [[0, 0, 1, 1]]
    >>> red = np.zeros((1, 2, 3), np.uint8); red[0, 1, 2] = 255              # BGR: red only
    >>> mask_from_pixels(red).tolist()
    [[0, 1]]
    >>> mask_from_pixels(np.array([[0, 20, 40]], np.uint8))
    Traceback (most recent call last):
    ...
    ValueError: soft mask with values 20..40, none above 127 (half of the 8-bit scale): cannot tell defect from background
    """
    if pixels.ndim == 3:
        colour = pixels[..., :3] if pixels.shape[2] >= 3 else pixels[..., :1]
        pixels = colour.max(axis=2)
    if pixels.ndim != 2:
        raise ValueError(f"a mask must be a 2-D image, got shape {pixels.shape}")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{pixels.dtype} pixels; a mask must be 8- or 16-bit unsigned integers")
    levels = mask_levels(pixels)
    if len(levels) <= 1:
        return (pixels != 0).astype(np.uint8)
    bits = 8 if levels[-1] <= 255 else 16
    half = (1 << bits) // 2 - 1
    mask = (pixels > half).astype(np.uint8)
    if not mask.any():
        raise ValueError(
            f"soft mask with values {levels[0]}..{levels[-1]}, none above {half} (half of the "
            f"{bits}-bit scale): cannot tell defect from background"
        )
    return mask


def decode_mask(data: bytes, path: str | Path) -> np.ndarray:
    """Decode the bytes of a mask file into a binary mask (:func:`mask_from_pixels`).

    Raises
    ------
    DataError
        Naming ``path``, if the bytes are not an image or the mask breaks the rule.
    """
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if pixels is None or pixels.size == 0:
        raise DataError(f"{path}: cannot decode the mask (corrupt or not an image file)")
    try:
        return mask_from_pixels(pixels)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None


def read_mask(path: str | Path, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a pixel mask as a binary ``uint8`` array (1 = defect), by :func:`mask_from_pixels`.

    Parameters
    ----------
    path
        The mask file (PNG or BMP; 8- or 16-bit, grey or colour).
    shape
        When given, the ``(height, width)`` of the image the mask belongs to; a mask of
        another size is an error that names the file.

    Examples
    --------
    >>> import tempfile, cv2, numpy as np, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.png")
    >>> _ = cv2.imwrite(p, np.array([[0, 255], [200, 100]], np.uint8))
    >>> read_mask(p).tolist()
    [[0, 1], [1, 0]]
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    mask = decode_mask(path.read_bytes(), path)
    if shape is not None and mask.shape != tuple(shape):
        raise DataError(f"{path}: {size_problem(mask.shape, tuple(shape))}")
    return mask


def size_problem(mask_shape: tuple[int, ...], image_shape: tuple[int, ...]) -> str:
    """What is wrong with a mask whose ``(height, width)`` is not its image's.

    Examples
    --------
    >>> size_problem((10, 4), (10, 5))
    'mask is 4x10 (WxH) but its image is 5x10'
    """
    return (
        f"mask is {mask_shape[1]}x{mask_shape[0]} (WxH) but its image is "
        f"{image_shape[1]}x{image_shape[0]}"
    )


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image, decoding it fully so a corrupt file is caught."""
    return read_gray(path).shape[:2]
