"""MagneticTile: crops of magnetic tile surfaces in six classes.

Huang, Qiu, Yuan, "Surface defect saliency of magnetic tile", The Visual Computer 36 (2020),
85–96 (published by its authors for research use; cite the paper). 1344 grayscale crops of
varying size: Blowhole 115, Break 85, Crack 57, Fray 32, Uneven 103, Free 952.

Layout (``<root>`` is the ``MagneticTile`` folder)::

    MT_Blowhole/Imgs/exp1_num_108719.jpg
    MT_Blowhole/Imgs/exp1_num_108719.png     # the mask, soft-edged, binarised at > 127
    ...
    MT_Free/Imgs/...

Labelling decision. The label is the class folder: every image outside ``MT_Free`` is
defective. Four ``MT_Uneven`` masks are entirely empty (the class says defective, the mask
shows nothing); they keep ``label = 1`` with ``defect_area = 0``, because the folder is the
dataset's own image-level annotation. Experiments that need a defect mask (block labels,
pixel metrics) say how they treat them. Each image is its own ``group``: the crops come with
no record of which physical tile they were cut from.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DataError
from .io import read_gray, read_mask
from .samples import make_table

NAME = "magnetictile"
GOOD_CLASS = "Free"


def magnetic_tile_samples(root: str | Path) -> pd.DataFrame:
    """Read MagneticTile into a sample table (see :mod:`defectlib.data.samples`).

    Parameters
    ----------
    root
        The ``MagneticTile`` folder holding the ``MT_<Class>`` folders.

    Returns
    -------
    pandas.DataFrame
        One row per image; ``defect_class`` is the class name (``Blowhole`` … ``Free``),
        ``group`` is the sample id (no two images share a physical part we know of).
    """
    root = Path(root)
    class_dirs = sorted(p for p in root.glob("MT_*") if p.is_dir())
    if not class_dirs:
        raise DataError(
            f"{root}: no MT_<Class> folders found; expected MT_<Class>/Imgs/<name>.jpg "
            "with <name>.png beside each image"
        )
    rows = []
    for class_dir in class_dirs:
        cls = class_dir.name[len("MT_") :]
        images = sorted((class_dir / "Imgs").glob("*.jpg"))
        if not images:
            raise DataError(f"{class_dir / 'Imgs'}: no .jpg images in this class folder")
        for image_path in images:
            mask_path = image_path.with_suffix(".png")
            if not mask_path.is_file():
                raise DataError(f"{image_path}: no mask beside it (expected {mask_path.name})")
            image = read_gray(image_path)
            area = int(read_mask(mask_path, shape=image.shape).sum())
            sample_id = f"{class_dir.name}/{image_path.stem}"
            rows.append(
                {
                    "sample_id": sample_id,
                    "dataset": NAME,
                    "image_path": str(image_path.resolve()),
                    "mask_path": str(mask_path.resolve()),
                    "label": int(cls != GOOD_CLASS),
                    "group": sample_id,
                    "defect_class": cls,
                    "defect_area": area,
                    "height": image.shape[0],
                    "width": image.shape[1],
                }
            )
    return make_table(rows)
