"""Data: readers, the synthetic generator, dilation, folds and the torch Dataset.

The registry :data:`DATASETS` maps a dataset's name to how it is found and read; it is the
one place that knows the datasets, so adding one is adding an entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from ..errors import DataError
from ..paths import data_root
from .samples import COLUMNS, make_table, validate_table


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is found under the data root and read into a sample table."""

    name: str
    folder: str
    reader: Callable[[Path], pd.DataFrame]
    layout: str
    source: str
    n_folds_default: int


def _kolektor(root: Path) -> pd.DataFrame:
    from .kolektor import kolektor_samples

    return kolektor_samples(root)


def _magnetic(root: Path) -> pd.DataFrame:
    from .magnetic import magnetic_tile_samples

    return magnetic_tile_samples(root)


DATASETS: dict[str, DatasetSpec] = {
    "kolektorsdd": DatasetSpec(
        name="kolektorsdd",
        folder="KolektorSDD",
        reader=_kolektor,
        layout="KolektorSDD/kosNN/PartM.jpg with PartM_label.bmp (official) or PartM_label.png",
        source="Tabernik et al. 2019, J. Intell. Manuf.; CC BY-NC-SA 4.0",
        n_folds_default=3,
    ),
    "magnetictile": DatasetSpec(
        name="magnetictile",
        folder="MagneticTile",
        reader=_magnetic,
        layout="MagneticTile/MT_<Class>/Imgs/<name>.jpg with <name>.png",
        source="Huang, Qiu, Yuan 2018, The Visual Computer; research use",
        n_folds_default=5,
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``, or a :class:`DataError` listing the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def dataset_folder(name: str, root: Path | None = None) -> Path:
    """The dataset's folder under the data root (``$DEFECTLIB_DATA``)."""
    return Path(root or data_root()) / dataset_spec(name).folder


def load_samples(name: str, root: Path | None = None) -> pd.DataFrame:
    """Read dataset ``name`` from the data root into a sample table.

    Raises
    ------
    DataError
        If the folder is missing or malformed; the message names the path, the expected
        layout, and how to get the data.
    """
    spec = dataset_spec(name)
    folder = dataset_folder(name, root)
    if not folder.is_dir():
        raise DataError(missing_data_message(name, folder))
    return spec.reader(folder)


def missing_data_message(name: str, folder: Path) -> str:
    spec = dataset_spec(name)
    return (
        f"dataset {name!r} not found at {folder}\n"
        f"  expected layout: {spec.layout}\n"
        f"  get it with:     defectlib data download {name}   (into $DEFECTLIB_DATA, "
        f"now {folder.parent})\n"
        f"  or point DEFECTLIB_DATA at a folder that holds {spec.folder}/"
    )


__all__ = [
    "COLUMNS",
    "DATASETS",
    "DatasetSpec",
    "dataset_folder",
    "dataset_spec",
    "load_samples",
    "make_table",
    "validate_table",
]
