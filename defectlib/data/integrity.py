"""Data checks: every fault of a dataset, found in one pass and named file by file.

A dataset's reader first *scans* its folder (:class:`Scan`): which files are samples, and
which entries break the layout (an image without its mask, a mask without its image, a stray
folder that would become a new group or class, a symlink that repeats a folder). The check
then decodes every image and mask in full and adds the faults found there:

* a file that does not decode completely (truncated JPEG, PNG or BMP; not an image);
* a mask that breaks the mask rule (:func:`defectlib.data.io.mask_from_pixels`);
* a mask whose size is not its image's;
* two masks for one image that disagree;
* an image whose bytes repeat another sample's (a duplicate can land in a training and a
  test fold at once), unless the dataset lists the pair as known.

:func:`check_dataset` returns all faults; :func:`verify_dataset`, which the readers run, raises
one :class:`~defectlib.errors.DataError` listing them all, and remembers a clean result under
``<cache>/data-checks/`` keyed by a fingerprint of the folder (every entry's name and every
file's content), so a clean dataset is decoded for checking once.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from ..errors import DataError

#: Bump when the checks change, so cached clean results are checked again.
CHECK_VERSION = 1


@dataclass(frozen=True, order=True)
class Fault:
    """One thing wrong with a dataset: the file or folder, and what is wrong with it."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" if self.problem else self.path


@dataclass(frozen=True)
class SampleFiles:
    """The files of one sample as a scan finds them (``mask`` None: no mask was found)."""

    sample_id: str
    image: Path
    mask: Path | None
    group: str
    defect_class: str
    #: A second mask file for the same image (KolektorSDD: both ``_label.bmp`` and ``.png``).
    other_mask: Path | None = None


@dataclass(frozen=True)
class Scan:
    """What a dataset's folder holds: its samples, layout faults, and allowed duplicates."""

    samples: tuple[SampleFiles, ...]
    faults: tuple[Fault, ...]
    #: Pairs of sample ids whose images are known to be byte-identical in the published data.
    known_duplicates: frozenset[frozenset[str]] = field(default_factory=frozenset)


@dataclass(frozen=True)
class SampleCheck:
    """What decoding one sample found: its hashes and size (None where it failed).

    ``image_sha256`` is of the file's bytes, even when they do not decode.
    """

    sample_id: str
    image_sha256: str | None
    mask_sha256: str | None
    shape: tuple[int, int] | None


@dataclass(frozen=True)
class CheckReport:
    """The result of :func:`check_dataset`."""

    dataset: str
    folder: Path
    faults: tuple[Fault, ...]
    samples: tuple[SampleCheck, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.faults

    def hashes(self) -> pd.DataFrame:
        """``sample_id``, ``image_sha256``, ``mask_sha256`` of every sample whose image was read.

        A mask that is missing or does not decode has an empty hash, so it differs from any
        manifest's.
        """
        rows = [
            (s.sample_id, s.image_sha256, s.mask_sha256 or "")
            for s in self.samples
            if s.image_sha256 is not None
        ]
        return pd.DataFrame(rows, columns=["sample_id", "image_sha256", "mask_sha256"])


# --------------------------------------------------------------------------- messages


def faults_message(dataset: str, folder: str | Path, faults: Iterable[Fault]) -> str:
    """One line naming the dataset and the number of faults, then one line per fault.

    Examples
    --------
    >>> print(faults_message("demo", "/d", [Fault("/d/a.jpg", "truncated")]))
    demo at /d: 1 fault
      /d/a.jpg: truncated
    """
    faults = list(faults)
    head = f"{dataset} at {folder}: {len(faults)} fault{'s' if len(faults) != 1 else ''}"
    return "\n".join([head, *(f"  {f}" for f in faults)])


def raise_faults(dataset: str, folder: str | Path, faults: Iterable[Fault]) -> None:
    """Raise one :class:`DataError` listing every fault; return if there is none."""
    faults = list(faults)
    if faults:
        raise DataError(faults_message(dataset, folder, faults))


# --------------------------------------------------------------------------- layout helpers


def visible_entries(folder: Path) -> list[Path]:
    """The entries of ``folder`` whose names do not start with a dot, sorted by name."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def repeated_folders(folders: list[Path]) -> tuple[list[Path], list[Fault]]:
    """Folders that are one folder seen twice (a symlink to another of them), as faults.

    Of folders that resolve to the same place, a real folder is kept before a symlink (and
    the first by name among equals); the others are faults naming the one kept.

    Returns
    -------
    (kept, faults)
        ``kept`` in the order given.
    """
    by_target: dict[Path, list[Path]] = {}
    for folder in folders:
        by_target.setdefault(folder.resolve(), []).append(folder)
    faults = []
    dropped = set()
    for same in by_target.values():
        keep = min(same, key=lambda p: (p.is_symlink(), p.name))
        for other in same:
            if other != keep:
                dropped.add(other)
                faults.append(Fault(str(other), f"the same folder as {keep} (a symlink to it): its images would count twice"))
    return [f for f in folders if f not in dropped], faults


def read_samples(name: str, root: str | Path, samples: Iterable[SampleFiles], row) -> pd.DataFrame:
    """The sample table of ``row(sample)`` for every sample, with all read errors raised together.

    Parameters
    ----------
    name, root
        The dataset and its folder, for the message.
    samples
        The scan's samples.
    row
        ``SampleFiles -> dict`` of one table row; it raises :class:`DataError` naming the file.
    """
    from .samples import make_table

    rows, faults = [], []
    for sample in samples:
        try:
            rows.append(row(sample))
        except DataError as exc:
            faults.append(_as_fault(str(exc), (sample.image, sample.mask)))
    raise_faults(name, root, faults)
    return make_table(rows)


def _as_fault(message: str, paths: Iterable[Path | None]) -> Fault:
    for path in paths:
        if path is not None and message.startswith(f"{path}: "):
            return Fault(str(path), message[len(str(path)) + 2 :])
    return Fault(message, "")


# --------------------------------------------------------------------------- decoding


@contextmanager
def _strict_pillow() -> Iterator[None]:
    from PIL import ImageFile

    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def decode_problem(data: bytes) -> str | None:
    """Why ``data`` does not decode completely as an image, or None if it does.

    Pillow decodes every pixel and refuses a file that ends early (a truncated JPEG, PNG or
    BMP, which OpenCV would accept with the missing part filled in); OpenCV must decode it
    too, since the readers use OpenCV.
    """
    import cv2
    from PIL import Image

    if not data:
        return "empty file"
    try:
        with _strict_pillow(), Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ... for bad files
        text = str(exc) or type(exc).__name__
        if "truncated" in text.lower():
            return f"truncated file, cannot decode it completely ({text})"
        return f"cannot decode the image ({text})"
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        return "cannot decode the image with OpenCV (corrupt or incomplete file)"
    return None


def _read(path: Path) -> tuple[bytes | None, Fault | None]:
    try:
        return path.read_bytes(), None
    except OSError as exc:
        return None, Fault(str(path), f"cannot read it ({exc.strerror or exc})")


def _image(path: Path) -> tuple[str | None, tuple[int, int] | None, list[Fault]]:
    import cv2

    data, fault = _read(path)
    if fault:
        return None, None, [fault]
    sha = hashlib.sha256(data).hexdigest()
    problem = decode_problem(data)
    if problem:
        return sha, None, [Fault(str(path), problem)]
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    return sha, gray.shape[:2], []


def _mask(path: Path) -> tuple[np.ndarray | None, list[Fault]]:
    import cv2

    from .io import mask_from_pixels

    data, fault = _read(path)
    if fault:
        return None, [fault]
    problem = decode_problem(data)
    if problem:
        return None, [Fault(str(path), problem.replace("the image", "the mask"))]
    try:
        return mask_from_pixels(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)), []
    except ValueError as exc:
        return None, [Fault(str(path), f"mask encoding: {exc}")]


def check_sample(sample: SampleFiles) -> tuple[SampleCheck, list[Fault]]:
    """Decode one sample's image and mask(s) in full; its hashes and every fault found."""
    from .folds import mask_sha256
    from .io import size_problem

    image_sha, shape, faults = _image(sample.image)
    mask_sha = None
    if sample.mask is not None:
        mask, mask_faults = _mask(sample.mask)
        faults += mask_faults
        if mask is not None:
            mask_sha = mask_sha256(mask)
            if shape is not None and mask.shape != shape:
                faults.append(Fault(str(sample.mask), size_problem(mask.shape, shape)))
            if sample.other_mask is not None:
                other, other_faults = _mask(sample.other_mask)
                faults += other_faults
                if other is not None and (other.shape != mask.shape or (other != mask).any()):
                    faults.append(Fault(str(sample.other_mask), f"disagrees with {sample.mask.name}, the other mask of {sample.image.name}; keep one"))
    return SampleCheck(sample.sample_id, image_sha, mask_sha, shape), faults


def duplicate_faults(
    samples: Iterable[SampleFiles], checks: Iterable[SampleCheck], known: frozenset[frozenset[str]] = frozenset()
) -> list[Fault]:
    """A fault for every image whose bytes repeat an earlier sample's, unless a known pair."""
    first: dict[str, SampleFiles] = {}
    faults = []
    for sample, check in zip(samples, checks):
        if check.image_sha256 is None:
            continue
        earlier = first.setdefault(check.image_sha256, sample)
        if earlier is not sample and frozenset({earlier.sample_id, sample.sample_id}) not in known:
            faults.append(Fault(str(sample.image), f"the same image as {earlier.image} (identical bytes): "
                                                   "a duplicate can be in a training and a test fold at once"))
    return faults


def scan_dataset(name: str, folder: Path) -> Scan:
    """The scan of dataset ``name`` in ``folder`` (its registry entry's scanner)."""
    from . import dataset_spec

    spec = dataset_spec(name)
    if spec.scanner is None:
        raise DataError(f"dataset {name!r} has no layout to check (it is generated)")
    return spec.scanner(folder)


def check_dataset(name: str, folder: str | Path) -> CheckReport:
    """Every fault of dataset ``name`` in ``folder``: layout, decoding, masks, sizes, duplicates.

    Parameters
    ----------
    name
        A dataset of the registry (:data:`defectlib.data.DATASETS`) that is not generated.
    folder
        The dataset's folder (``<data root>/KolektorSDD``, ...).

    Returns
    -------
    CheckReport
        Its faults sorted by path, and the hashes of every sample that decoded.
    """
    start = time.perf_counter()
    folder = Path(folder)
    scan = scan_dataset(name, folder)
    faults = list(scan.faults)
    checks = []
    for sample in scan.samples:
        check, sample_faults = check_sample(sample)
        checks.append(check)
        faults += sample_faults
    faults += duplicate_faults(scan.samples, checks, scan.known_duplicates)
    return CheckReport(name, folder, tuple(sorted(set(faults))), tuple(checks), time.perf_counter() - start)


# --------------------------------------------------------------------------- cached verification


def folder_fingerprint(folder: str | Path) -> str:
    """SHA-256 of every entry under ``folder``: relative names, symlink targets, file contents.

    Follows symlinked folders once (a loop is listed, not followed), so any file added,
    removed, renamed or changed anywhere under the folder changes the fingerprint.
    """
    folder = Path(folder)
    digest = hashlib.sha256(f"check-v{CHECK_VERSION}\n".encode())
    seen: set[str] = set()
    for here, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        rel = os.path.relpath(here, folder)
        for name in dirs:
            path = os.path.join(here, name)
            link = os.readlink(path) if os.path.islink(path) else ""
            digest.update(f"d {rel}/{name} {link}\n".encode())
        for name in sorted(files):
            path = os.path.join(here, name)
            digest.update(f"f {rel}/{name}\n".encode())
            digest.update(_file_digest(path))
    return digest.hexdigest()


def _file_digest(path: str) -> bytes:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:  # a dangling link or unreadable file: the check reports it
        digest.update(f"unreadable {exc.errno}".encode())
    return digest.digest()


def _marker(name: str, fingerprint: str) -> Path:
    from ..paths import cache_root

    return cache_root() / "data-checks" / f"{name}-{fingerprint[:16]}.json"


def remember_clean(report: CheckReport, fingerprint: str | None = None) -> Path | None:
    """Record that the folder of a clean ``report`` passed, under ``<cache>/data-checks/``.

    Returns the marker file, or None when the report has faults or the marker cannot be
    written (a read-only cache: the check then simply runs again next time).
    """
    from ..atomic import write_json

    if not report.ok:
        return None
    fingerprint = fingerprint or folder_fingerprint(report.folder)
    marker = _marker(report.dataset, fingerprint)
    try:
        write_json(marker, {"dataset": report.dataset, "folder": str(report.folder), "fingerprint": fingerprint,
                            "samples": len(report.samples), "faults": 0, "check_version": CHECK_VERSION})
    except OSError:
        return None
    return marker


def verify_dataset(name: str, folder: str | Path) -> Path | None:
    """Check dataset ``name`` in ``folder`` unless this very content was found clean before.

    Returns
    -------
    pathlib.Path or None
        The marker file that records the clean check (None if it could not be written).

    Raises
    ------
    DataError
        Listing every fault (:func:`check_dataset`), one line each.
    """
    folder = Path(folder)
    fingerprint = folder_fingerprint(folder)
    marker = _marker(name, fingerprint)
    if marker.is_file():
        return marker
    report = check_dataset(name, folder)
    raise_faults(name, folder, report.faults)
    return remember_clean(report, fingerprint)
