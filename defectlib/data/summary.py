"""Dataset statistics: what ``defectlib data summary`` prints and the data chapter shows."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .io import read_mask
from .masks import resize_mask

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def summarize(table: pd.DataFrame, *, quantiles: Sequence[float] = QUANTILES) -> dict[str, Any]:
    """Counts and defect-area quantiles of a sample table, as JSON-ready values.

    Defect-area quantiles are over defective images whose mask is not empty, in pixels at
    native resolution.

    Examples
    --------
    >>> t = pd.DataFrame({"label": [1, 1, 0], "group": ["a", "a", "b"],
    ...                   "defect_class": ["x", "x", "good"], "defect_area": [10, 30, 0],
    ...                   "height": [5, 5, 5], "width": [4, 4, 4]})
    >>> s = summarize(t, quantiles=(0.5,))
    >>> s["images"], s["defective"], s["groups"], s["defect_area_quantiles"]
    (3, 2, 2, {'0.5': 20.0})
    """
    defective = table[table["label"] == 1]
    areas = defective.loc[defective["defect_area"] > 0, "defect_area"].to_numpy()
    return {
        "images": int(len(table)),
        "defective": int(len(defective)),
        "defect_free": int(len(table) - len(defective)),
        "groups": int(table["group"].nunique()),
        "classes": {str(k): int(v) for k, v in table["defect_class"].value_counts().sort_index().items()},
        "defective_with_empty_mask": int((defective["defect_area"] == 0).sum()),
        "defects_under_100px": int(((defective["defect_area"] > 0) & (defective["defect_area"] < 100)).sum()),
        "height_range": [int(table["height"].min()), int(table["height"].max())],
        "width_range": [int(table["width"].min()), int(table["width"].max())],
        "defect_area_quantiles": {
            f"{q:g}": float(np.quantile(areas, q)) if len(areas) else None for q in quantiles
        },
    }


def areas_at_size(table: pd.DataFrame, size: tuple[int, int]) -> np.ndarray:
    """Defect area of every sample after resizing its mask to ``size`` (H, W).

    Seed 004 counts a defect as small under 100 px without saying at which resolution; this
    gives the area at the network input (224×224) beside the native one.
    """
    return np.array(
        [
            int(resize_mask(read_mask(p), size).sum()) if area > 0 else 0
            for p, area in zip(table["mask_path"], table["defect_area"])
        ],
        dtype=np.int64,
    )
