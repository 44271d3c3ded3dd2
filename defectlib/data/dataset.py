"""A thin torch Dataset over a sample table.

It reads (and optionally caches in memory) each image and mask, dilates the mask at native
resolution (:func:`defectlib.data.masks.dilate_mask`), resizes both to the network's input
size, and returns tensors. Everything else (which rows, which folds) is decided by the
caller on the sample table.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from .io import read_gray, read_mask
from .masks import dilate_mask, resize_mask
from .samples import validate_table


def load_pair(
    row: pd.Series | dict, *, size: tuple[int, int] | None = None, dilation: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Image (``uint8``) and binary mask of one sample, dilated then resized to ``size`` (H, W)."""
    image = read_gray(row["image_path"])
    mask = dilate_mask(read_mask(row["mask_path"], shape=image.shape), dilation)
    if size is not None and tuple(size) != image.shape:
        height, width = size
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        mask = resize_mask(mask, (height, width))
    return image, mask


class SurfaceDataset(Dataset):
    """Samples of a sample table as ``{"image", "mask", "label", "index"}`` dicts.

    Parameters
    ----------
    table
        A sample table (:mod:`defectlib.data.samples`), already restricted to the wanted rows.
    size
        ``(height, width)`` of the network input, or None for native size.
    dilation
        Annotation dilation kernel k (0 = the original mask).
    transform
        Optional callable ``(image, mask) -> (image, mask)`` on the tensors (augmentation).
    cache
        Keep decoded, dilated, resized arrays in memory after first use.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        *,
        size: tuple[int, int] | None = None,
        dilation: int = 0,
        transform: Callable | None = None,
        cache: bool = True,
    ) -> None:
        self.table = validate_table(table).reset_index(drop=True)
        self.size = size
        self.dilation = dilation
        self.transform = transform
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.table)

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        pair = load_pair(self.table.iloc[index], size=self.size, dilation=self.dilation)
        if self._cache is not None:
            self._cache[index] = pair
        return pair

    def __getitem__(self, index: int) -> dict:
        image, mask = self.arrays(index)
        image_t = torch.from_numpy(image).float().div_(255.0).unsqueeze(0)
        mask_t = torch.from_numpy(mask).float().unsqueeze(0)
        if self.transform is not None:
            image_t, mask_t = self.transform(image_t, mask_t)
        return {
            "image": image_t,
            "mask": mask_t,
            "label": torch.tensor(int(self.table.at[index, "label"]), dtype=torch.long),
            "index": index,
        }
