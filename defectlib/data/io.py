"""Reading images and masks, with errors that name the file.

Masks are binarised at ``> 127`` (MagneticTile's masks have soft edges; KolektorSDD's are
0/255), so a mask is always a ``uint8`` array of 0 and 1.
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


def read_mask(path: str | Path, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a pixel mask as a binary ``uint8`` array (1 = defect), binarised at > 127.

    Parameters
    ----------
    path
        The mask file (PNG or BMP).
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
    mask = read_gray(path)
    if shape is not None and mask.shape != tuple(shape):
        raise DataError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image is "
            f"{shape[1]}x{shape[0]}"
        )
    return (mask > 127).astype(np.uint8)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image, decoding it fully so a corrupt file is caught."""
    return read_gray(path).shape[:2]
