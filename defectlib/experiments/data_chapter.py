"""The data chapter: statistics of both datasets, their folds, and annotation dilation.

It reads each dataset's sample table, makes (or reads) its folds manifest, and stores in the
results cache: one row per sample (fold, label, class, defect area at native resolution and at
the recognition network's 224×224 input) and a summary per dataset. It also stores the crop
of one defect with its masks dilated by each k of seed 000's Fig. 3, so the figure renders
without the dataset.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from ..config import ExperimentConfig
from ..data import DATASETS, dataset_spec, load_samples
from ..data.folds import FoldsManifest, ensure_folds
from ..data.io import read_gray, read_mask
from ..data.masks import check_kernel, dilate_mask
from ..data.summary import areas_at_size, summarize
from ..results import Run, RunResult
from .common import all_of, timed

SAMPLE_COLUMNS = [
    "sample_id", "dataset", "fold", "label", "group", "defect_class",
    "defect_area", "defect_area_input", "height", "width",
]

_DatasetNames = all_of(DATASETS, "datasets")


class DataConfig(ExperimentConfig):
    """Parameters of the data chapter."""

    EXPERIMENT: ClassVar[str] = "data"
    PROFILES: ClassVar[dict] = {
        "smoke": {"datasets": ["synthetic"]},
        "converged": {"datasets": ["kolektorsdd", "magnetictile"]},
        "paper": {"datasets": ["kolektorsdd", "magnetictile"]},
    }

    #: Datasets to describe (names in :data:`defectlib.data.DATASETS`).
    datasets: _DatasetNames
    #: Folds per dataset; None = the dataset's study default (KolektorSDD 3, MagneticTile 5).
    n_folds: int | None = Field(default=None, ge=2)
    #: Annotation dilation kernels of seed 000's Fig. 3 (0 = the original mask).
    dilations: list[int] = [0, 5, 9, 13, 15]
    #: Network input (H, W) at which defect areas are also counted (seed 004: 224×224).
    input_size: list[int] = [224, 224]
    #: Half-size of the crop around the example defect, in native pixels.
    crop_margin: int = 48

    @field_validator("dilations")
    @classmethod
    def _odd(cls, value: list[int]) -> list[int]:
        return [check_kernel(k) for k in value]

    def folds_for(self, dataset: str) -> int:
        return dataset_spec(dataset).n_folds_default if self.n_folds is None else self.n_folds


def dilation_example(row: pd.Series, dilations: list[int], margin: int) -> dict[str, np.ndarray]:
    """Crop around one defect: the image and its mask dilated by every k, at native size."""
    image = read_gray(row["image_path"])
    mask = read_mask(row["mask_path"], shape=image.shape)
    ys, xs = np.nonzero(mask)
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, image.shape[0])
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, image.shape[1])
    masks = np.stack([dilate_mask(mask, k)[y0:y1, x0:x1] for k in dilations])
    return {
        "image": image[y0:y1, x0:x1],
        "masks": masks,
        "dilations": np.array(dilations),
        "sample_id": np.array(row["sample_id"]),
    }


def _sample_rows(name: str, table: pd.DataFrame, manifest: FoldsManifest, cfg: DataConfig) -> pd.DataFrame:
    rows = table.assign(
        fold=manifest.folds_of(table),
        group=manifest.groups_of(table),
        defect_area_input=areas_at_size(table, tuple(cfg.input_size)),
    )
    return rows[SAMPLE_COLUMNS]


def run(cfg: DataConfig) -> RunResult:
    """Compute (or read from the cache) the data chapter's numbers."""
    tables = {name: load_samples(name) for name in tqdm(cfg.datasets, desc="read datasets")}
    manifests = {
        name: ensure_folds(name, table, n_folds=cfg.folds_for(name), seed=cfg.seed)
        for name, table in tables.items()
    }
    current = Run(cfg, manifests)
    if current.complete:
        return current.load()

    for name in tqdm(cfg.datasets, desc="per-sample table"):
        if not current.has_part(name):
            rows, seconds = timed(_sample_rows, name, tables[name], manifests[name], cfg)
            current.save_part(name, rows, seconds=seconds)
    samples = current.load_parts()

    first = tables[cfg.datasets[0]]
    defective = first[first["defect_area"] > 0]
    median_row = defective.iloc[int(np.argmin(np.abs(defective["defect_area"] - defective["defect_area"].median())))]
    current.save_artifact("dilation_example", **dilation_example(median_row, cfg.dilations, cfg.crop_margin))

    metrics = {"datasets": {}}
    for name, table in tables.items():
        rows = samples[samples["dataset"] == name]
        per_fold = rows.groupby("fold").agg(images=("label", "size"), defective=("label", "sum"), groups=("group", "nunique"))
        metrics["datasets"][name] = {
            **summarize(table),
            "defects_under_100px_at_input": int(((rows["defect_area_input"] > 0) & (rows["defect_area_input"] < 100)).sum()),
            "folds": {str(f): {k: int(v) for k, v in r.items()} for f, r in per_fold.iterrows()},
        }
    return current.finish(samples, metrics)


def data_checksums(result: RunResult) -> pd.DataFrame:
    """The data the chapter's numbers were computed from: each dataset's folds manifest and checksum.

    The data checksum is the SHA-256 over every sample's image and mask hash
    (:func:`defectlib.data.folds.data_checksum`); ``defectlib data check`` prints the first 12
    hex digits of the checksum of the data at hand, so a copy can be compared with the book's.

    Returns
    -------
    pandas.DataFrame
        One row per dataset: ``folds manifest`` (file name) and ``data checksum``.
    """
    manifests = result.provenance["folds_manifests"]
    return pd.DataFrame(
        {
            "folds manifest": [info.get("file", "") for info in manifests.values()],
            "data checksum": [info.get("data_checksum", "") for info in manifests.values()],
        },
        index=pd.Index(list(manifests), name="dataset"),
    )
