"""The sample table: one row per image, the common form of every dataset in the study.

Every reader (:func:`defectlib.data.kolektor.kolektor_samples`,
:func:`defectlib.data.magnetic.magnetic_tile_samples`,
:func:`defectlib.data.synthetic.synthetic_samples`) is a pure function that returns a
:class:`pandas.DataFrame` with exactly these columns, one row per image, sorted by
``sample_id``:

=============  =======  ======================================================================
column         dtype    meaning
=============  =======  ======================================================================
sample_id      str      unique within the dataset, stable across machines (``kos07/Part3``)
dataset        str      registry name (``kolektorsdd``, ``magnetictile``, ``synthetic``)
image_path     str      absolute path of the grayscale image
mask_path      str      absolute path of the pixel mask (same size as the image)
label          int      1 = defective, 0 = defect-free
group          str      physical part; samples of one group never straddle folds
defect_class   str      finer class (MagneticTile's defect type; ``defective`` / ``good``)
defect_area    int      defect pixels in the binarised mask at native resolution
height, width  int      native image size in pixels
=============  =======  ======================================================================
"""

from __future__ import annotations

import pandas as pd

from ..errors import DataError

COLUMNS: tuple[str, ...] = (
    "sample_id",
    "dataset",
    "image_path",
    "mask_path",
    "label",
    "group",
    "defect_class",
    "defect_area",
    "height",
    "width",
)

_INT_COLUMNS = ("label", "defect_area", "height", "width")


def make_table(rows: list[dict]) -> pd.DataFrame:
    """Build a sample table from row dicts, with the columns in order and sorted by id.

    Raises
    ------
    DataError
        If a row misses a column or two rows share a ``sample_id``.
    """
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if rows:
        missing = [c for c in COLUMNS if any(c not in r for r in rows)]
        if missing:
            raise DataError(f"sample rows miss columns {missing}")
    for col in _INT_COLUMNS:
        table[col] = table[col].astype("int64")
    duplicated = table["sample_id"][table["sample_id"].duplicated()].tolist()
    if duplicated:
        raise DataError(f"duplicate sample ids: {duplicated[:5]}")
    return table.sort_values("sample_id", kind="stable").reset_index(drop=True)


def validate_table(table: pd.DataFrame) -> pd.DataFrame:
    """Check that ``table`` has the sample-table columns; return it unchanged."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"not a sample table: columns {missing} are missing")
    return table
