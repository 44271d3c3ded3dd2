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

Layout faults (:mod:`defectlib.data.integrity`): an ``MT_`` folder that is not one of the six
classes (it would become a seventh class), a class folder that is a symlink to another, an
image without its mask and a mask without its image. Folders and files outside the ``MT_``
folders and the ``Imgs`` folders (a README, ``Thumbs.db``) are ignored.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .integrity import Fault, SampleFiles, Scan, raise_faults, read_samples, repeated_folders, visible_entries
from .io import read_gray, read_mask

NAME = "magnetictile"
GOOD_CLASS = "Free"
#: The dataset's classes, each the folder ``MT_<class>``.
CLASSES = ("Blowhole", "Break", "Crack", "Fray", "Free", "Uneven")
_NO_CLASSES = "no MT_<Class> folders found; expected MT_<Class>/Imgs/<name>.jpg with <name>.png beside each image"


def image_file(sample_id: str) -> str:
    """The image of a sample id, relative to the dataset folder (``MT_Crack/Imgs/x.jpg``)."""
    class_folder, _, stem = sample_id.partition("/")
    return f"{class_folder}/Imgs/{stem}.jpg"


def _scan_class(class_dir: Path) -> tuple[list[SampleFiles], list[Fault]]:
    imgs = class_dir / "Imgs"
    entries = [p for p in visible_entries(imgs) if p.is_file()] if imgs.is_dir() else []
    images = [p for p in entries if p.suffix == ".jpg"]
    if not images:
        return [], [Fault(str(imgs), "no .jpg images in this class folder")]
    cls = class_dir.name[len("MT_") :]
    samples, faults = [], []
    for image in images:
        mask = image.with_suffix(".png")
        if not mask.is_file():
            faults.append(Fault(str(image), f"no mask beside it (expected {mask.name})"))
        sample_id = f"{class_dir.name}/{image.stem}"
        samples.append(SampleFiles(sample_id, image, mask if mask.is_file() else None, sample_id, cls))
    stems = {p.stem for p in images}
    faults += [Fault(str(p), f"mask without its image (no {p.stem}.jpg beside it)")
               for p in entries if p.suffix == ".png" and p.stem not in stems]
    return samples, faults


def scan_magnetic_tile(root: str | Path) -> Scan:
    """The samples of a MagneticTile folder and every fault of its layout, without decoding.

    Parameters
    ----------
    root
        The ``MagneticTile`` folder holding the ``MT_<Class>`` folders.
    """
    root = Path(root)
    if not root.is_dir():
        return Scan((), (Fault(str(root), f"no such folder; {_NO_CLASSES[3:]}"),))
    faults: list[Fault] = []
    class_dirs = []
    for folder in visible_entries(root):
        if not folder.is_dir() or not folder.name.startswith("MT_"):
            continue  # not part of the dataset
        if folder.name[len("MT_") :] in CLASSES:
            class_dirs.append(folder)
        else:
            faults.append(Fault(str(folder), f"stray folder: not one of the classes "
                                             f"({', '.join('MT_' + c for c in CLASSES)}), yet it would be read as a new class; "
                                             "move it out of the dataset"))
    class_dirs, repeated = repeated_folders(class_dirs)
    faults += repeated
    samples = []
    for class_dir in class_dirs:
        class_samples, class_faults = _scan_class(class_dir)
        samples += class_samples
        faults += class_faults
    if not class_dirs and not faults:
        faults.append(Fault(str(root), _NO_CLASSES))
    return Scan(tuple(samples), tuple(faults))


def _row(sample: SampleFiles) -> dict:
    image = read_gray(sample.image)
    area = int(read_mask(sample.mask, shape=image.shape).sum())
    return {
        "sample_id": sample.sample_id,
        "dataset": NAME,
        "image_path": str(sample.image.resolve()),
        "mask_path": str(sample.mask.resolve()),
        "label": int(sample.defect_class != GOOD_CLASS),
        "group": sample.group,
        "defect_class": sample.defect_class,
        "defect_area": area,
        "height": image.shape[0],
        "width": image.shape[1],
    }


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

    Raises
    ------
    DataError
        Listing every fault found (layout, decoding, mask size), one line each.
    """
    scan = scan_magnetic_tile(root)
    raise_faults(NAME, root, scan.faults)
    return read_samples(NAME, root, scan.samples, _row)
