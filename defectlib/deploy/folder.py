"""A folder of one's own images as a sample table: the layout, its checks, and its dataset.

Two layouts are read (``<folder>`` is the folder given to ``defectlib train``)::

    <folder>/good/<image>             defect-free images
    <folder>/defective/<image>        images with a defect
    <folder>/masks/<mask>             one mask per defective image: the image's file name, or
                                      its stem with .png / .bmp (defect pixels non-zero);
                                      a good image may have one too, and it must be empty

or, with a CSV of labels::

    <folder>/labels.csv               columns image, label, and optionally mask and part
    <folder>/<anything>/<image>       paths in the CSV are relative to <folder>

``label`` is ``good`` / ``defective`` (or 0 / 1); ``mask`` is a mask file relative to
``<folder>`` (required for defective images, optional for good ones).

**Parts.** Images of one physical part must never be split between training and validation
(they look alike, so validation would flatter the model). Declare the part of an image by a
file-name prefix ending in a double underscore, ``<part>__<name>`` (``shaft07__top.png`` and
``shaft07__side.png`` are one part), or by a ``part`` column in ``labels.csv``. An image with
neither is a part of its own.

Images are read as grey levels (any size, any format OpenCV and Pillow decode: PNG, JPEG,
BMP, TIFF). Masks follow the study's mask rule (:func:`defectlib.data.io.mask_from_pixels`).
:func:`check_folder` decodes every file in full and names every fault, one per file, as the
study's data checks do (:mod:`defectlib.data.integrity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.integrity import Fault, SampleFiles, check_sample, duplicate_faults, faults_message, visible_entries
from ..data.io import read_gray, read_mask
from ..data.samples import make_table
from ..errors import DataError

#: The ``dataset`` column of a folder's sample table.
DATASET = "folder"
#: File extensions read as images (lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Mask file extensions tried beside the image's own name.
MASK_SUFFIXES = (".png", ".bmp")
#: The separator between a part name and the rest of a file name.
PART_SEPARATOR = "__"
LABELS_CSV = "labels.csv"
CLASSES = ("good", "defective")

LAYOUT = ("expected good/ and defective/ image folders (with masks/ holding a mask per defective image, "
          "named like it), or a labels.csv with columns image, label[, mask, part]")


@dataclass(frozen=True)
class FolderScan:
    """What a folder holds: its samples (group = part, defect_class = good/defective) and the
    faults of its layout."""

    folder: Path
    samples: tuple[SampleFiles, ...]
    faults: tuple[Fault, ...]


def part_of(file_name: str) -> str:
    """The part an image belongs to: the file-name prefix before ``__``, else the stem.

    Examples
    --------
    >>> part_of("shaft07__top.png"), part_of("img_0003.png"), part_of("__odd.png")
    ('shaft07', 'img_0003', '__odd')
    """
    stem = Path(file_name).stem
    prefix, sep, rest = stem.partition(PART_SEPARATOR)
    return prefix if sep and prefix and rest else stem


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has an image extension (:data:`IMAGE_SUFFIXES`).

    Examples
    --------
    >>> is_image_file(Path("a/B.JPG")), is_image_file(Path("notes.txt"))
    (True, False)
    """
    return path.suffix.lower() in IMAGE_SUFFIXES


def _mask_candidates(masks: Path, image_name: str) -> list[Path]:
    stem = Path(image_name).stem
    names = [image_name] + [stem + s for s in MASK_SUFFIXES if stem + s != image_name]
    return [masks / n for n in names if (masks / n).is_file()]


def _class_images(folder: Path, name: str) -> tuple[list[Path], list[Fault]]:
    """The images of ``folder/name`` and the faults of that sub-folder's layout."""
    sub = folder / name
    if not sub.is_dir():
        return [], []
    images, faults = [], []
    for entry in visible_entries(sub):
        if entry.is_dir():
            faults.append(Fault(str(entry), f"a folder inside {name}/: put the images directly in {name}/ "
                                             f"and name their part with a prefix (<part>{PART_SEPARATOR}<name>)"))
        elif is_image_file(entry):
            images.append(entry)
    return images, faults


def _scan_class_folders(folder: Path) -> FolderScan:
    masks = folder / "masks"
    samples, faults, stems = [], [], {}
    for label in CLASSES:
        images, class_faults = _class_images(folder, label)
        faults += class_faults
        for image in images:
            other = stems.setdefault(image.stem, image)
            if other is not image:
                faults.append(Fault(str(image), f"the same name as {other}: one mask name would stand for both; "
                                                "rename one"))
                continue
            found = _mask_candidates(masks, image.name) if masks.is_dir() else []
            if len(found) > 1:
                faults.append(Fault(str(image), f"two masks for it ({', '.join(p.name for p in found)}); keep one"))
            if label == "defective" and not found:
                faults.append(Fault(str(image), f"defective image without its mask (expected masks/{image.name} "
                                                f"or masks/{image.stem}.png)"))
            samples.append(SampleFiles(sample_id=f"{label}/{image.name}", image=image,
                                       mask=found[0] if found else None, group=part_of(image.name),
                                       defect_class=label))
    if masks.is_dir():
        for mask in visible_entries(masks):
            if mask.is_file() and is_image_file(mask) and mask.stem not in stems:
                faults.append(Fault(str(mask), f"mask without its image (no good/{mask.stem}.* or "
                                               f"defective/{mask.stem}.*; mask names must match image names)"))
    return FolderScan(folder, tuple(samples), tuple(faults))


def parse_label(value) -> str | None:
    """``good`` / ``defective`` from a label cell (``good``, ``ok``, ``0``; ``defective``,
    ``bad``, ``ng``, ``1``), or None when it is neither.

    Examples
    --------
    >>> parse_label("Defective"), parse_label(0), parse_label("1"), parse_label("maybe")
    ('defective', 'good', 'defective', None)
    """
    text = str(value).strip().lower()
    if text in ("good", "ok", "0", "0.0", "false", "normal"):
        return "good"
    if text in ("defective", "bad", "ng", "1", "1.0", "true", "defect"):
        return "defective"
    return None


def _csv_path(folder: Path, value, column: str, row: int) -> tuple[Path | None, Fault | None]:
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return None, None
    path = (folder / str(value).strip())
    if not path.is_file():
        return None, Fault(f"{folder / LABELS_CSV}: row {row}", f"{column} {value!r}: no such file ({path})")
    return path, None


def _scan_csv(folder: Path) -> FolderScan:
    csv = folder / LABELS_CSV
    try:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        return FolderScan(folder, (), (Fault(str(csv), f"cannot read it as CSV ({exc})"),))
    missing = [c for c in ("image", "label") if c not in table.columns]
    if missing:
        return FolderScan(folder, (), (Fault(str(csv), f"columns {missing} are missing; it has {list(table.columns)}"),))
    samples, faults, seen = [], [], {}
    for i, row in enumerate(table.to_dict("records"), start=2):  # row 1 is the header
        where = f"{csv}: row {i}"
        label = parse_label(row["label"])
        image, fault = _csv_path(folder, row["image"], "image", i)
        mask, mask_fault = _csv_path(folder, row.get("mask"), "mask", i)
        faults += [f for f in (fault, mask_fault) if f]
        if label is None:
            faults.append(Fault(where, f"label {row['label']!r} is neither good (0) nor defective (1)"))
        if image is None:
            if not fault:
                faults.append(Fault(where, "no image given"))
            continue
        if image.resolve() in seen:
            faults.append(Fault(where, f"image {row['image']} is listed twice (also row {seen[image.resolve()]})"))
            continue
        seen[image.resolve()] = i
        if label == "defective" and mask is None and not mask_fault:
            faults.append(Fault(str(image), "defective image without its mask (give it in the mask column)"))
        part = str(row.get("part") or "").strip() or part_of(image.name)
        if label is not None:
            samples.append(SampleFiles(sample_id=str(image.relative_to(folder)) if image.is_relative_to(folder)
                                       else str(image), image=image, mask=mask, group=part, defect_class=label))
    return FolderScan(folder, tuple(samples), tuple(faults))


def scan_folder(folder: str | Path) -> FolderScan:
    """The samples of an image folder and every fault of its layout, without decoding.

    Parameters
    ----------
    folder : path-like
        A folder in one of the layouts of :mod:`defectlib.deploy.folder`.

    Returns
    -------
    FolderScan
        Samples and layout faults (a missing folder, no images at all, masks whose names match
        no image, defective images without a mask, ...).
    """
    folder = Path(folder).absolute()
    if not folder.is_dir():
        return FolderScan(folder, (), (Fault(str(folder), f"no such folder; {LAYOUT}"),))
    if (folder / LABELS_CSV).is_file():
        scan = _scan_csv(folder)
    elif any((folder / c).is_dir() for c in CLASSES):
        scan = _scan_class_folders(folder)
    else:
        return FolderScan(folder, (), (Fault(str(folder), f"neither good/ nor defective/ nor {LABELS_CSV} in it; {LAYOUT}"),))
    if not scan.samples and not scan.faults:
        return FolderScan(folder, (), (Fault(str(folder), f"no images found (extensions {', '.join(IMAGE_SUFFIXES)}); {LAYOUT}"),))
    return scan


def _mask_faults(sample: SampleFiles, area: int) -> list[Fault]:
    if sample.defect_class == "defective" and sample.mask is not None and area == 0:
        return [Fault(str(sample.mask), f"empty mask (no defect pixel), yet {sample.image.name} is labelled defective")]
    if sample.defect_class == "good" and area > 0:
        return [Fault(str(sample.mask), f"{area} defect pixels, yet {sample.image.name} is labelled good")]
    return []


def _row(sample: SampleFiles) -> tuple[dict, list[Fault]]:
    image = read_gray(sample.image)
    area = int(read_mask(sample.mask, shape=image.shape).sum()) if sample.mask is not None else 0
    row = {"sample_id": sample.sample_id, "dataset": DATASET, "image_path": str(sample.image.resolve()),
           "mask_path": str(sample.mask.resolve()) if sample.mask is not None else "",
           "label": int(sample.defect_class == "defective"), "group": sample.group,
           "defect_class": sample.defect_class, "defect_area": area,
           "height": image.shape[0], "width": image.shape[1]}
    return row, _mask_faults(sample, area)


@dataclass(frozen=True)
class FolderData:
    """A checked folder: its sample table and the content hashes of every sample."""

    folder: Path
    table: pd.DataFrame
    hashes: pd.DataFrame

    @property
    def checksum(self) -> str:
        """SHA-256 over every sample's id, image bytes and mask pixels (the data checksum)."""
        from ..data.folds import data_checksum

        return data_checksum(self.hashes)


def check_folder(folder: str | Path) -> tuple[FolderData | None, list[Fault]]:
    """Scan ``folder`` and decode every image and mask; the data (None if any fault) and all faults.

    Beyond the layout (:func:`scan_folder`): files that do not decode completely, masks of
    another size than their image, masks that break the mask rule, an empty mask for a
    defective image or defect pixels in a good image's mask, and byte-identical images.
    """
    scan = scan_folder(folder)
    faults = list(scan.faults)
    checks, rows = [], []
    for sample in scan.samples:
        check, sample_faults = check_sample(sample)
        checks.append(check)
        faults += sample_faults
        if not sample_faults:
            row, row_faults = _row(sample)
            rows.append(row)
            faults += row_faults
    faults += duplicate_faults(scan.samples, checks)
    if faults:
        return None, sorted(set(faults))
    hashes = pd.DataFrame([(c.sample_id, c.image_sha256, c.mask_sha256 or "") for c in checks],
                          columns=["sample_id", "image_sha256", "mask_sha256"])
    return FolderData(scan.folder, make_table(rows), hashes), []


def read_folder(folder: str | Path) -> FolderData:
    """The checked sample table of an image folder.

    Raises
    ------
    DataError
        Listing every fault found (:func:`check_folder`), one line each, naming the file.
    """
    data, faults = check_folder(folder)
    if faults:
        raise DataError(faults_message("image folder", Path(folder).absolute(), faults))
    return data


def training_problem(table: pd.DataFrame, *, min_parts: int = 5) -> str | None:
    """Why a sample table cannot train a detector with a validation split, or None.

    It needs defective and good images, and enough parts for a validation split by part
    (``min_parts`` in all, at least two of them with a defective image).

    Examples
    --------
    >>> t = pd.DataFrame({"label": [0, 0], "group": ["a", "b"]})
    >>> print(training_problem(t))
    no defective image: training needs defective images (in defective/, each with its mask in masks/) beside the good ones
    """
    n_bad, n_good = int((table["label"] == 1).sum()), int((table["label"] == 0).sum())
    if not len(table):
        return f"no images; {LAYOUT}"
    if n_bad == 0:
        return ("no defective image: training needs defective images (in defective/, each with its mask in "
                "masks/) beside the good ones")
    if n_good == 0:
        return "no good image: training needs defect-free images (in good/) beside the defective ones"
    parts, bad_parts = table["group"].nunique(), table.loc[table["label"] == 1, "group"].nunique()
    if parts < min_parts or bad_parts < 2:
        return (f"{parts} parts ({bad_parts} with a defective image): a validation split by part needs at least "
                f"{min_parts} parts and 2 with a defective image; add images, or declare fewer images per part "
                f"(prefix <part>{PART_SEPARATOR})")
    return None


def load_training_table(source: str | Path) -> tuple[pd.DataFrame, str, str]:
    """The sample table, data checksum and description of a training source.

    Parameters
    ----------
    source : str or path-like
        An image folder (:mod:`defectlib.deploy.folder`), or the name of one of the study's
        datasets (``kolektorsdd``, ``magnetictile``, ``synthetic``), read and checked as the
        study reads it.

    Raises
    ------
    DataError
        For a folder with faults (every one named) or that cannot train (:func:`training_problem`).
    """
    from ..data import DATASETS, dataset_folder, load_samples

    if str(source) in DATASETS and not Path(source).is_dir():
        from ..data.folds import content_hashes, data_checksum, linked_groups

        table = load_samples(str(source))
        hashes = content_hashes(table)
        checksum = data_checksum(hashes)
        # parts that share a byte-identical image are one part (KolektorSDD repeats two commutators)
        table = table.assign(group=linked_groups(table["group"], hashes["image_sha256"]))
        where = f"{source} ({dataset_folder(str(source))})"
    else:
        data = read_folder(source)
        table, checksum, where = data.table, data.checksum, str(data.folder)
    problem = training_problem(table)
    if problem:
        raise DataError(f"{where}: {problem}")
    return table, checksum, where


__all__ = ["CLASSES", "DATASET", "FolderData", "FolderScan", "IMAGE_SUFFIXES", "LABELS_CSV", "LAYOUT",
           "MASK_SUFFIXES", "PART_SEPARATOR", "check_folder", "is_image_file", "load_training_table",
           "parse_label", "part_of", "read_folder", "scan_folder", "training_problem"]
