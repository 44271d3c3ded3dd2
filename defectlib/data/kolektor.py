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
so it is the ``group`` that folds never split. Folders whose names start with ``kos`` but are
not ``kosNN`` (``kos03_junk``), a folder that is a symlink to another ``kosNN``, an image
without its mask and a mask without its image are faults (:mod:`defectlib.data.integrity`);
other folders and files (split files, notes) are not part of the dataset and are ignored.

Known duplicates. In the copy under ``../shared/data`` (rebuilt from a re-publication) 16
images are byte-identical to an image in another folder: ``kos01/Part0`` … ``Part7`` are
``kos18/Part7`` and ``kos19/Part0`` … ``Part6``, and ``kos13/Part0`` … ``Part7`` are
``kos28/Part7`` and ``kos29/Part0`` … ``Part6`` (two of these pairs, both defective, have
masks that differ). They are listed in :data:`KNOWN_DUPLICATES`, so the data check accepts
them; any other repeated image is a fault.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .integrity import Fault, SampleFiles, Scan, raise_faults, read_samples, repeated_folders, visible_entries
from .io import read_gray, read_mask

NAME = "kolektorsdd"
_GROUP = re.compile(r"kos\d+", re.IGNORECASE)
_PART = re.compile(r"^Part(\d+)\.jpg$", re.IGNORECASE)
_MASK = re.compile(r"^(Part\d+)_label\.(bmp|png)$", re.IGNORECASE)
_MASK_SUFFIXES = ("_label.bmp", "_label.png")
_NO_IMAGES = ("no KolektorSDD images found; expected kosNN/PartM.jpg with "
              "PartM_label.bmp or PartM_label.png beside each image")


def _duplicate_pairs() -> frozenset[frozenset[str]]:
    pairs = []
    for kept, first, second in (("kos01", "kos18", "kos19"), ("kos13", "kos28", "kos29")):
        pairs.append((f"{kept}/Part0", f"{first}/Part7"))
        pairs += [(f"{kept}/Part{i}", f"{second}/Part{i - 1}") for i in range(1, 8)]
    return frozenset(frozenset(p) for p in pairs)


#: Pairs of sample ids whose images are byte-identical in the published copy (module docstring).
KNOWN_DUPLICATES = _duplicate_pairs()


def image_file(sample_id: str) -> str:
    """The image of a sample id, relative to the dataset folder (``kos01/Part3.jpg``)."""
    return f"{sample_id}.jpg"


def _part_key(path: Path) -> tuple[int, str]:
    return len(path.name), path.name


def _scan_group(folder: Path) -> tuple[list[SampleFiles], list[Fault]]:
    entries = [p for p in visible_entries(folder) if p.is_file()]
    images = sorted((p for p in entries if _PART.match(p.name)), key=_part_key)
    stems = {p.stem for p in images}
    samples, faults = [], []
    for image in images:
        masks = [image.with_name(image.stem + s) for s in _MASK_SUFFIXES if image.with_name(image.stem + s).is_file()]
        if not masks:
            faults.append(Fault(str(image), f"no mask beside it (expected {image.stem}_label.bmp or {image.stem}_label.png)"))
        samples.append(SampleFiles(
            sample_id=f"{folder.name}/{image.stem}", image=image, mask=masks[0] if masks else None,
            group=folder.name, defect_class="", other_mask=masks[1] if len(masks) > 1 else None,
        ))
    for mask in entries:
        match = _MASK.match(mask.name)
        if match and match.group(1) not in stems:
            faults.append(Fault(str(mask), f"mask without its image (no {match.group(1)}.jpg beside it)"))
    return samples, faults


def scan_kolektor(root: str | Path) -> Scan:
    """The samples of a KolektorSDD folder and every fault of its layout, without decoding.

    Parameters
    ----------
    root
        The ``KolektorSDD`` folder holding ``kos01`` … ``kos50``.
    """
    root = Path(root)
    if not root.is_dir():
        return Scan((), (Fault(str(root), "no such folder; expected the KolektorSDD folder holding kos01 … kos50"),))
    faults: list[Fault] = []
    groups = []
    for folder in visible_entries(root):
        if not folder.is_dir() or not folder.name.lower().startswith("kos"):
            continue  # not part of the dataset (split files, notes)
        if _GROUP.fullmatch(folder.name):
            groups.append(folder)
        else:
            faults.append(Fault(str(folder), "stray folder: its name is not kosNN, yet it would be read as "
                                             "one more commutator; move it out of the dataset"))
    groups, repeated = repeated_folders(groups)
    faults += repeated
    samples = []
    for folder in groups:
        group_samples, group_faults = _scan_group(folder)
        samples += group_samples
        faults += group_faults
    if not samples and not faults:
        faults.append(Fault(str(root), _NO_IMAGES))
    return Scan(tuple(samples), tuple(faults), KNOWN_DUPLICATES)


def kolektor_images(root: str | Path) -> list[Path]:
    """The ``kosNN/PartM.jpg`` files under ``root``, sorted by folder then part number.

    Raises
    ------
    DataError
        Listing every fault of the layout (:func:`scan_kolektor`).
    """
    scan = scan_kolektor(root)
    raise_faults(NAME, root, scan.faults)
    return [s.image for s in scan.samples]


def _row(sample: SampleFiles) -> dict:
    image = read_gray(sample.image)
    area = int(read_mask(sample.mask, shape=image.shape).sum())
    return {
        "sample_id": sample.sample_id,
        "dataset": NAME,
        "image_path": str(sample.image.resolve()),
        "mask_path": str(sample.mask.resolve()),
        "label": int(area > 0),
        "group": sample.group,
        "defect_class": "defective" if area > 0 else "good",
        "defect_area": area,
        "height": image.shape[0],
        "width": image.shape[1],
    }


def kolektor_samples(root: str | Path) -> pd.DataFrame:
    """Read KolektorSDD into a sample table (see :mod:`defectlib.data.samples`).

    Every image and mask is decoded, so a corrupt file or a mask of the wrong size is reported
    here by file name rather than halfway through a training run; all faults found are
    reported together. The full check (truncated files, duplicates) is
    :func:`defectlib.data.integrity.check_dataset`, which :func:`defectlib.data.load_samples`
    runs first.

    Parameters
    ----------
    root
        The ``KolektorSDD`` folder holding ``kos01`` … ``kos50``.

    Returns
    -------
    pandas.DataFrame
        One row per image; ``group`` is the ``kosNN`` folder, ``defect_class`` is
        ``"defective"`` or ``"good"``.

    Raises
    ------
    DataError
        Listing every fault found, one line each.
    """
    scan = scan_kolektor(root)
    raise_faults(NAME, root, scan.faults)
    return read_samples(NAME, root, scan.samples, _row)

