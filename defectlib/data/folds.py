"""Cross-validation folds grouped by physical part, stratified by class, seeded.

Folds are made once per (dataset, k, seed, data) and written to a CSV manifest under
``<results>/folds/``; every experiment reads its folds from that file, and records the file's
SHA-256 in its provenance. The manifest also records a content hash of every image and mask,
so the manifest's hash pins the data as well as the split. Because the manifest is committed,
the study's folds do not move if a later scikit-learn changes its splitting algorithm.

Changed data is never split anew silently: when manifests of a dataset exist and none was made
from the data at hand, :func:`ensure_folds` raises a :class:`~defectlib.errors.DataError` that
names every sample missing, added or changed against the closest of them, unless the caller
asks for a new split (``allow_new_split=True``; ``defectlib data folds NAME --new-split``).
Generated (synthetic) data is exempt: it is remade from its seed.

Grouping: KolektorSDD's group is the ``kosNN`` folder (one commutator), so no part is in train
and test at once; MagneticTile's group is the image itself. Groups that hold a byte-identical
image are merged first (:func:`linked_groups`), so a repeated image never lands in two folds. Stratification is on
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
from ..errors import ConfigError, DataError
from ..paths import results_root
from .io import read_mask

_MANIFEST_NAME = re.compile(r"(?P<dataset>.+)-k(?P<k>\d+)-seed(?P<seed>\d+)-(?P<checksum>[0-9a-f]+)")
MANIFEST_COLUMNS = ("sample_id", "fold", "label", "group", "defect_class", "image_sha256", "mask_sha256")


def linked_groups(groups, image_hashes) -> np.ndarray:
    """Groups merged wherever two of them hold a byte-identical image.

    A dataset can hold the same image twice under different parts (KolektorSDD's copy repeats
    two commutators' images in two other folders). Folds and validation sets split by group;
    were the copies in different groups, an image could be trained on and tested on at once.
    Merged groups are named by their members joined with ``+``, in sorted order.

    Examples
    --------
    >>> linked_groups(["a", "a", "b", "c", "d"], ["1", "2", "2", "3", "1"]).tolist()
    ['a+b+d', 'a+b+d', 'a+b+d', 'c', 'a+b+d']
    """
    groups = [str(g) for g in groups]
    parent = {g: g for g in groups}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    first_with: dict[str, str] = {}
    for group, digest in zip(groups, image_hashes):
        other = first_with.setdefault(str(digest), group)
        a, b = root(group), root(other)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[str, set[str]] = {}
    for g in parent:
        members.setdefault(root(g), set()).add(g)
    names = {r: "+".join(sorted(m)) for r, m in members.items()}
    return np.array([names[root(g)] for g in groups], dtype=object)


def assign_folds(table: pd.DataFrame, *, n_folds: int, seed: int) -> np.ndarray:
    """Fold index (0 … n_folds-1) for every row of a sample table.

    Pure: the same table, k and seed give the same folds. Rows of one ``group`` share a fold;
    each fold gets about the same share of every ``defect_class``. (:func:`ensure_folds`
    merges groups that share an image first, :func:`linked_groups`.)

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


def mask_sha256(mask: np.ndarray) -> str:
    """SHA-256 of a binary mask's pixels and shape (not of its file).

    So the official BMP masks and lossless PNG copies of them hash alike.
    """
    header = f"{mask.shape[0]}x{mask.shape[1]}:".encode()
    return hashlib.sha256(header + np.packbits(mask).tobytes()).hexdigest()


def _mask_sha256(path: str) -> str:
    return mask_sha256(read_mask(path))


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

    def groups_of(self, samples: pd.DataFrame) -> np.ndarray:
        """The group every row of ``samples`` was split by (the manifest's ``group``: the part,
        merged with the parts it shares an image with, :func:`linked_groups`)."""
        self.folds_of(samples)  # the same check that every sample is in the manifest
        return self.table.set_index("sample_id")["group"].loc[samples["sample_id"]].to_numpy()


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


#: At most this many samples are named per kind of difference (the rest are counted).
MAX_NAMED = 20


def check_split_parameters(n_folds: int, seed: int) -> None:
    """Raise :class:`ConfigError` unless ``n_folds >= 2`` and ``seed >= 0`` are integers.

    Examples
    --------
    >>> check_split_parameters(3, 0)
    >>> check_split_parameters(1, 0)
    Traceback (most recent call last):
    ...
    defectlib.errors.ConfigError: folds: the number of folds must be an integer of at least 2, got 1
    """
    for value, what, least in ((n_folds, "the number of folds", 2), (seed, "the seed", 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ConfigError(f"folds: {what} must be an integer of at least {least}, got {value!r}")


def manifest_differences(manifest: pd.DataFrame, hashes: pd.DataFrame) -> dict[str, list[str]]:
    """Sample ids missing, added, or with another image or mask than a manifest records.

    Parameters
    ----------
    manifest, hashes
        Tables with ``sample_id``, ``image_sha256`` and ``mask_sha256`` (a manifest, and
        :func:`content_hashes` of the data at hand).

    Examples
    --------
    >>> old = pd.DataFrame({"sample_id": ["a", "b", "c"], "image_sha256": ["1", "2", "3"],
    ...                     "mask_sha256": ["x", "y", "z"]})
    >>> new = pd.DataFrame({"sample_id": ["b", "c", "d"], "image_sha256": ["2", "9", "4"],
    ...                     "mask_sha256": ["q", "z", "w"]})
    >>> manifest_differences(old, new)
    {'missing': ['a'], 'added': ['d'], 'image changed': ['c'], 'mask changed': ['b']}
    """
    old = manifest.set_index("sample_id")[["image_sha256", "mask_sha256"]]
    new = hashes.set_index("sample_id")[["image_sha256", "mask_sha256"]]
    common = old.index.intersection(new.index).sort_values()
    return {
        "missing": sorted(set(old.index) - set(new.index)),
        "added": sorted(set(new.index) - set(old.index)),
        "image changed": [s for s in common if old.at[s, "image_sha256"] != new.at[s, "image_sha256"]],
        "mask changed": [s for s in common if old.at[s, "mask_sha256"] != new.at[s, "mask_sha256"]],
    }


def dataset_manifests(dataset: str, folder: str | Path) -> list[Path]:
    """The folds manifests of ``dataset`` in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob(f"{dataset}-k*-seed*-*.csv")
        if (m := _MANIFEST_NAME.fullmatch(p.stem)) is not None and m["dataset"] == dataset
    )


def _generated(dataset: str) -> bool:
    from . import DATASETS

    spec = DATASETS.get(dataset)
    return spec is not None and spec.generated


def _describe(dataset: str, sample_id: str) -> str:
    from . import DATASETS

    spec = DATASETS.get(dataset)
    return spec.image_file(sample_id) if spec is not None and spec.image_file is not None else sample_id


def changed_data_message(dataset: str, hashes: pd.DataFrame, checksum: str, folder: str | Path) -> str | None:
    """Why the data at hand may not be split anew, or None when it may.

    It may when ``folder`` holds no manifest of ``dataset``, or one made from this very data
    (another k or seed of the same data is a new split asked for by name); otherwise the
    message compares the data with the manifest it differs least from, sample by sample.
    """
    manifests = dataset_manifests(dataset, folder)
    if not manifests or any(p.stem.endswith(f"-{checksum[:12]}") for p in manifests):
        return None
    by_checksum = {_MANIFEST_NAME.fullmatch(p.stem)["checksum"]: p for p in manifests}
    compared = []
    for path in by_checksum.values():
        diffs = manifest_differences(pd.read_csv(path, dtype={"sample_id": str}), hashes)
        compared.append((sum(map(len, diffs.values())), path.name, path, diffs))
    _, _, path, diffs = min(compared)
    counts = ", ".join(f"{len(v)} {k}" for k, v in diffs.items() if v)
    lines = [
        f"{dataset}: the data is not the data its folds were made from (data checksum "
        f"{checksum[:12]}, the manifest {path} has {path.stem.rsplit('-', 1)[1]}): {counts}"
    ]
    for kind, ids in diffs.items():
        lines += [f"  {kind}: {_describe(dataset, s)}" for s in ids[:MAX_NAMED]]
        if len(ids) > MAX_NAMED:
            lines.append(f"  {kind}: … and {len(ids) - MAX_NAMED} more")
    lines.append(
        f"Restore the data the manifest records, or split this data anew on purpose with "
        f"'defectlib data folds {dataset} --new-split' (ensure_folds(..., allow_new_split=True)); "
        f"every result then gets a new run key."
    )
    return "\n".join(lines)


def ensure_folds(
    dataset: str,
    table: pd.DataFrame,
    *,
    n_folds: int,
    seed: int,
    root: str | Path | None = None,
    allow_new_split: bool = False,
) -> FoldsManifest:
    """The folds manifest for this data, k and seed: read if it exists, else made and written.

    The file is ``<root>/<dataset>-k<k>-seed<seed>-<data checksum[:12]>.csv`` with root
    defaulting to ``<results>/folds``; it is written atomically.

    Parameters
    ----------
    dataset, table
        The dataset's name and its sample table.
    n_folds, seed
        The number of folds (at least 2) and the seed of the split (at least 0).
    root
        The folder of the manifests (default ``<results>/folds``).
    allow_new_split
        Make a manifest even though ``root`` holds manifests of this dataset made from other
        data. Without it, that is an error (:func:`changed_data_message`); generated datasets
        are exempt.

    Raises
    ------
    ConfigError
        For ``n_folds < 2`` or ``seed < 0``.
    DataError
        When the data differs from the data of the existing manifests (the message names
        every sample missing, added or changed), or a manifest does not match its name.
    """
    check_split_parameters(n_folds, seed)
    hashes = content_hashes(table)
    checksum = data_checksum(hashes)
    folder = Path(root) if root is not None else results_root() / "folds"
    path = folder / f"{dataset}-k{n_folds}-seed{seed}-{checksum[:12]}.csv"
    if not path.is_file():
        if not allow_new_split and not _generated(dataset):
            message = changed_data_message(dataset, hashes, checksum, folder)
            if message:
                raise DataError(message)
        digests = hashes.set_index("sample_id")["image_sha256"].loc[table["sample_id"]]
        table = table.assign(group=linked_groups(table["group"], digests))
        manifest = table[["sample_id", "label", "group", "defect_class"]].copy()
        manifest.insert(1, "fold", assign_folds(table, n_folds=n_folds, seed=seed))
        manifest = manifest.merge(hashes, on="sample_id", validate="one_to_one")
        write_csv(path, manifest[list(MANIFEST_COLUMNS)])
    manifest = read_manifest(path)
    if manifest.data_checksum != checksum:
        raise DataError(f"{path}: the manifest does not match the data it is named after; delete it to remake it")
    return manifest
