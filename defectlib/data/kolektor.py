"""KolektorSDD: images of electrical commutators with and without surface cracks.

Tabernik, Šela, Skvarč, Skočaj, "Segmentation-based deep-learning approach for
surface-defect detection", Journal of Intelligent Manufacturing 31 (2020), 759–776.
399 grayscale images (500 px wide, 1240–1284 px high) of 50 physical commutators, 52 with a
visible crack. Licence: CC BY-NC-SA 4.0 (non-commercial research use; cite the paper).

Layout (``<root>`` is the ``KolektorSDD`` folder)::

    kos01/Part0.jpg
    kos01/Part0_label.bmp      # official release
    kos01/Part0_label.png      # the copy in ../shared/data (lossless, same pixels)
    ...

An all-zero mask means a defect-free image. The ``kosNN`` folder is one physical commutator,
so it is the ``group`` that folds never split.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .io import read_gray, read_mask
from .samples import make_table

NAME = "kolektorsdd"
_PART = re.compile(r"^Part(\d+)\.jpg$", re.IGNORECASE)
_MASK_SUFFIXES = ("_label.bmp", "_label.png")


def _mask_for(image: Path) -> Path:
    for suffix in _MASK_SUFFIXES:
        candidate = image.with_name(image.stem + suffix)
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{image}: no mask beside it (expected {image.stem}_label.bmp or {image.stem}_label.png)"
    )


def kolektor_images(root: str | Path) -> list[Path]:
    """The ``kosNN/PartM.jpg`` files under ``root``, sorted by folder then part number."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected the KolektorSDD folder holding kos01 … kos50")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("kos"))
    images = [
        img
        for folder in folders
        for img in sorted(folder.iterdir(), key=lambda p: (len(p.name), p.name))
        if _PART.match(img.name)
    ]
    if not images:
        raise DataError(
            f"{root}: no KolektorSDD images found; expected kosNN/PartM.jpg with "
            "PartM_label.bmp or PartM_label.png beside each image"
        )
    return images


def kolektor_samples(root: str | Path) -> pd.DataFrame:
    """Read KolektorSDD into a sample table (see :mod:`defectlib.data.samples`).

    Every image and mask is decoded, so a corrupt file or a mask of the wrong size is reported
    here by file name rather than halfway through a training run.

    Parameters
    ----------
    root
        The ``KolektorSDD`` folder holding ``kos01`` … ``kos50``.

    Returns
    -------
    pandas.DataFrame
        One row per image; ``group`` is the ``kosNN`` folder, ``defect_class`` is
        ``"defective"`` or ``"good"``.
    """
    rows = []
    for image_path in kolektor_images(root):
        image = read_gray(image_path)
        mask_path = _mask_for(image_path)
        mask = read_mask(mask_path, shape=image.shape)
        area = int(mask.sum())
        group = image_path.parent.name
        rows.append(
            {
                "sample_id": f"{group}/{image_path.stem}",
                "dataset": NAME,
                "image_path": str(image_path.resolve()),
                "mask_path": str(mask_path.resolve()),
                "label": int(area > 0),
                "group": group,
                "defect_class": "defective" if area > 0 else "good",
                "defect_area": area,
                "height": image.shape[0],
                "width": image.shape[1],
            }
        )
    return make_table(rows)
