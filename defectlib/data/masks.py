"""Annotation precision: dilating the defect masks (seed 000, Fig. 3).

Seed 000 trains its segmentation network on masks dilated with a k×k kernel,
k ∈ {original, 5, 9, 13, 15}. Dilation happens at native resolution, before any resize, so the
same k means the same physical margin whatever the network's input size.
"""

from __future__ import annotations

import cv2
import numpy as np


def check_kernel(k: int) -> int:
    """``k`` if it is a valid dilation kernel (0, or an odd positive integer), else ValueError.

    Examples
    --------
    >>> check_kernel(9)
    9
    >>> check_kernel(4)
    Traceback (most recent call last):
    ...
    ValueError: dilation kernel k must be 0 or an odd positive integer, got 4
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0 or (k > 1 and k % 2 == 0):
        raise ValueError(f"dilation kernel k must be 0 or an odd positive integer, got {k!r}")
    return k


def dilate_mask(mask: np.ndarray, k: int) -> np.ndarray:
    """Dilate a binary mask with a k×k square kernel; ``k = 0`` (or 1) returns it unchanged.

    Parameters
    ----------
    mask
        2-D array, nonzero = defect.
    k
        Kernel size: 0 for the original annotation, otherwise an odd positive integer so the
        dilation is centred (the paper uses 5, 9, 13, 15).

    Returns
    -------
    numpy.ndarray
        A ``uint8`` array of 0 and 1, the shape of ``mask``.

    Examples
    --------
    >>> m = np.zeros((7, 7), np.uint8); m[3, 3] = 1
    >>> int(dilate_mask(m, 3).sum()), int(dilate_mask(m, 5).sum()), int(dilate_mask(m, 0).sum())
    (9, 25, 1)
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    check_kernel(k)
    binary = (mask > 0).astype(np.uint8)
    if k <= 1:
        return binary
    return cv2.dilate(binary, np.ones((k, k), np.uint8))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a binary mask to ``size = (height, width)``, keeping thin defects.

    A target pixel is defective when any part of the source area it covers is (area
    interpolation, then ``> 0``); nearest-neighbour resizing would drop one-pixel cracks when
    shrinking.

    Examples
    --------
    >>> m = np.zeros((8, 8), np.uint8); m[:, 3] = 1      # a 1-px vertical crack
    >>> resize_mask(m, (4, 4)).sum(axis=0).tolist()
    [0, 4, 0, 0]
    """
    height, width = size
    resized = cv2.resize((mask > 0).astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    return (resized > 0).astype(np.uint8)
