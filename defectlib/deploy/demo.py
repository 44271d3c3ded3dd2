"""Image folders in the layout of :mod:`defectlib.deploy.folder`, made from the study's data.

What the book's "Your own parts" chapter trains on, and what the tests use: a small folder cut
from KolektorSDD (whole commutators, so each is one part: ``kosNN__PartM.jpg``), or from the
synthetic surfaces (:mod:`defectlib.data.synthetic`, ``partNNN__img_NNNN.png``), plus a second
set of images from other parts to predict on. Images are copied byte for byte; masks are
written as 0/255 PNGs named like their image. A folder is made in a temporary sibling and
renamed into place, and reused when it exists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..data.io import read_mask
from .folder import PART_SEPARATOR

#: KolektorSDD folders that repeat other folders' images (:data:`defectlib.data.kolektor.KNOWN_DUPLICATES`):
#: left out, so a folder never holds one image twice.
KOLEKTOR_REPEATS = ("kos01", "kos13")


def folder_name(row) -> str:
    """The file name of a sample in an image folder: ``<part>__<image file name>``.

    Examples
    --------
    >>> folder_name({"group": "kos07", "image_path": "/d/kos07/Part3.jpg"})
    'kos07__Part3.jpg'
    """
    return f"{row['group']}{PART_SEPARATOR}{Path(row['image_path']).name}"


def write_folder(table: pd.DataFrame, folder: str | Path) -> Path:
    """Write the rows of a sample table as an image folder (good/, defective/, masks/).

    Made in a temporary sibling and renamed into place; an existing ``folder`` is kept as it is.
    """
    folder = Path(folder)
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for sub in ("good", "defective", "masks"):
            (tmp / sub).mkdir()
        for row in table.to_dict("records"):
            name = folder_name(row)
            shutil.copyfile(row["image_path"], tmp / ("defective" if row["label"] else "good") / name)
            if row["label"]:
                mask = read_mask(row["mask_path"])
                cv2.imwrite(str(tmp / "masks" / f"{Path(name).stem}.png"), (mask * 255).astype(np.uint8))
        os.rename(tmp, folder)
    except FileExistsError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def split_parts(table: pd.DataFrame, n_train: int, n_test: int, *, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two sets of whole parts (``group``) of about ``n_train`` and ``n_test`` images, disjoint.

    Parts are taken in a seeded random order while they fit, every part with a defective image
    alternating with one without, so both sets get defective images.

    Examples
    --------
    >>> t = pd.DataFrame({"group": [f"p{i // 2}" for i in range(20)], "label": [i % 4 == 0 for i in range(20)]})
    >>> a, b = split_parts(t, 8, 4)
    >>> len(a), len(b), set(a["group"]) & set(b["group"])
    (8, 4, set())
    """
    rng = np.random.default_rng(seed)
    parts = table.groupby("group")["label"].max()
    bad = list(rng.permutation(parts[parts > 0].index.to_numpy()))
    good = list(rng.permutation(parts[parts == 0].index.to_numpy()))
    order = [p for pair in zip(bad, good) for p in pair] + bad[len(good):] + good[len(bad):]
    sizes = table.groupby("group").size()
    chosen: list[list[str]] = [[], []]
    room = [n_train, n_test]
    for part in order:
        for k in (0, 1):
            if sizes[part] <= room[k]:
                chosen[k].append(part)
                room[k] -= sizes[part]
                break
    return tuple(table[table["group"].isin(c)].reset_index(drop=True) for c in chosen)


def kolektor_table(root: str | Path | None = None) -> pd.DataFrame:
    """KolektorSDD's checked sample table without the folders that repeat others' images."""
    from ..data import load_samples

    table = load_samples("kolektorsdd", root)
    return table[~table["group"].isin(KOLEKTOR_REPEATS)].reset_index(drop=True)


def synthetic_table(n_images: int = 96, *, seed: int = 0) -> pd.DataFrame:
    """A synthetic dataset (:mod:`defectlib.data.synthetic`) of ``n_images`` in parts of four."""
    from ..data.synthetic import SyntheticSpec, synthetic_samples

    return synthetic_samples(spec=SyntheticSpec(n_images=n_images, defect_fraction=0.5, seed=seed))


def demo_folders(source: str, out: str | Path, *, n_train: int, n_test: int, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """An image folder of about ``n_train`` images from ``source`` (``kolektorsdd`` or
    ``synthetic``), and the sample table of about ``n_test`` images of other parts to predict on.

    Returns
    -------
    (Path, pandas.DataFrame)
        The folder ``<out>/<source>-<n_train>-seed<seed>`` and the test images' table (their
        ``image_path`` points into the dataset; labels and defect areas for checking).
    """
    table = kolektor_table() if source == "kolektorsdd" else synthetic_table(max(96, 2 * (n_train + n_test)), seed=seed)
    train, test = split_parts(table, n_train, n_test, seed=seed)
    folder = write_folder(train, Path(out) / f"{source}-{n_train}-seed{seed}")
    return folder, test


__all__ = ["KOLEKTOR_REPEATS", "demo_folders", "folder_name", "kolektor_table", "split_parts", "synthetic_table",
           "write_folder"]
