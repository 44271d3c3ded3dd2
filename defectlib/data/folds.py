"""Cross-validation folds grouped by physical part, stratified by class, seeded.

Folds are made once per (dataset, k, seed, data) and written to a CSV manifest under
``<results>/folds/``; every experiment reads its folds from that file, and records the file's
SHA-256 in its provenance. The manifest also records a content hash of every image and mask,
so the manifest's hash pins the data as well as the split. Because the manifest is committed,
the study's folds do not move if a later scikit-learn changes its splitting algorithm.

Grouping: KolektorSDD's group is the ``kosNN`` folder (one commutator), so no part is in train
and test at once; MagneticTile's group is the image itself. Stratification is on
``defect_class`` (KolektorSDD: defective/good; MagneticTile: the six classes), using
:class:`sklearn.model_selection.StratifiedGroupKFold`.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from ..atomic import write_csv
from ..errors import DataError
from ..paths import results_root
from .io import read_mask

_MANIFEST_NAME = re.compile(r"(?P<dataset>.+)-k(?P<k>\d+)-seed(?P<seed>\d+)-(?P<checksum>[0-9a-f]+)")
MANIFEST_COLUMNS = ("sample_id", "fold", "label", "group", "defect_class", "image_sha256", "mask_sha256")


def assign_folds(table: pd.DataFrame, *, n_folds: int, seed: int) -> np.ndarray:
    """Fold index (0 … n_folds-1) for every row of a sample table.

    Pure: the same table, k and seed give the same folds. Rows of one ``group`` share a fold;
    each fold gets about the same share of every ``defect_class``.

    Examples
    --------
    >>> t = pd.DataFrame({"group": list("aabbccdd"), "defect_class": ["x", "y"] * 4})
    >>> f = assign_folds(t, n_folds=2, seed=0)
    >>> sorted(set(f.tolist())), all(len(set(f[t.group == g])) == 1 for g in "abcd")
    ([0, 1], True)
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    n_groups = table["group"].nunique()
    if n_groups < n_folds:
        raise DataError(f"{n_groups} groups cannot fill {n_folds} folds")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.full(len(table), -1, dtype=np.int64)
    for fold, (_, test_idx) in enumerate(
        splitter.split(np.zeros(len(table)), table["defect_class"], groups=table["group"])
    ):
        folds[test_idx] = fold
    return folds


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mask_sha256(path: str) -> str:
    # Hash of the binarised pixels, not the file: the official BMP and our PNG masks agree.
    mask = read_mask(path)
    header = f"{mask.shape[0]}x{mask.shape[1]}:".encode()
    return hashlib.sha256(header + np.packbits(mask).tobytes()).hexdigest()


def content_hashes(table: pd.DataFrame) -> pd.DataFrame:
    """SHA-256 of every image file and of every mask's binarised pixels."""
    return pd.DataFrame(
        {
            "sample_id": table["sample_id"].to_numpy(),
            "image_sha256": [_file_sha256(p) for p in table["image_path"]],
            "mask_sha256": [_mask_sha256(p) for p in table["mask_path"]],
        }
    )


def data_checksum(hashes: pd.DataFrame) -> str:
    """One SHA-256 over the sorted (sample id, image hash, mask hash) rows."""
    rows = hashes.sort_values("sample_id")[["sample_id", "image_sha256", "mask_sha256"]]
    return hashlib.sha256(rows.to_csv(index=False, lineterminator="\n").encode()).hexdigest()


@dataclass(frozen=True)
class FoldsManifest:
    """A folds manifest on disk: its path, its SHA-256, its rows and the data it pins."""

    path: Path
    sha256: str
    table: pd.DataFrame
    data_checksum: str
    n_folds: int
    seed: int

    def folds_of(self, samples: pd.DataFrame) -> np.ndarray:
        """Fold of every row of ``samples`` (matched by ``sample_id``)."""
        lookup = self.table.set_index("sample_id")["fold"]
        missing = set(samples["sample_id"]) - set(lookup.index)
        if missing:
            raise DataError(f"{self.path}: {len(missing)} samples not in the manifest, e.g. {sorted(missing)[:3]}")
        return lookup.loc[samples["sample_id"]].to_numpy()


def read_manifest(path: str | Path) -> FoldsManifest:
    """Read a folds manifest written by :func:`ensure_folds`."""
    path = Path(path)
    raw = path.read_bytes()
    table = pd.read_csv(io.BytesIO(raw), dtype={"sample_id": str, "group": str})
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: not a folds manifest (columns {missing} missing)")
    name = _MANIFEST_NAME.fullmatch(path.stem)
    if name is None:
        raise DataError(f"{path}: not a folds manifest name (<dataset>-k<k>-seed<seed>-<checksum>.csv)")
    return FoldsManifest(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        table=table,
        data_checksum=data_checksum(table),
        n_folds=int(name["k"]),
        seed=int(name["seed"]),
    )


def ensure_folds(
    dataset: str,
    table: pd.DataFrame,
    *,
    n_folds: int,
    seed: int,
    root: str | Path | None = None,
) -> FoldsManifest:
    """The folds manifest for this data, k and seed: read if it exists, else made and written.

    The file is ``<root>/<dataset>-k<k>-seed<seed>-<data checksum[:12]>.csv`` with root
    defaulting to ``<results>/folds``; it is written atomically.
    """
    hashes = content_hashes(table)
    checksum = data_checksum(hashes)
    folder = Path(root) if root is not None else results_root() / "folds"
    path = folder / f"{dataset}-k{n_folds}-seed{seed}-{checksum[:12]}.csv"
    if not path.is_file():
        manifest = table[["sample_id", "label", "group", "defect_class"]].copy()
        manifest.insert(1, "fold", assign_folds(table, n_folds=n_folds, seed=seed))
        manifest = manifest.merge(hashes, on="sample_id", validate="one_to_one")
        write_csv(path, manifest[list(MANIFEST_COLUMNS)])
    manifest = read_manifest(path)
    if manifest.data_checksum != checksum:
        raise DataError(f"{path}: the manifest does not match the data it is named after; delete it to remake it")
    return manifest
