"""The "Your own parts" chapter: make a folder, train on it, predict other parts, export.

:func:`run` does what a reader would do with the commands (``defectlib train``, ``predict``,
``export``), through the same functions, on a folder cut from KolektorSDD (``converged``:
100 images of whole commutators, the model trained with the study's converged recipe) or
from the synthetic surfaces (``smoke``: a few steps), and predicts images of parts the
folder does not hold. It is cached like every experiment of the book
(:class:`defectlib.results.Run`, keyed by the config and the folder's data checksum): the
predictions in ``samples.csv``, the metrics and the export check in ``metrics.json``, a few
images with their maps in ``artifacts/gallery.npz``; the model directory itself lives under
``<cache>/own-parts/models/``, never in the results.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from ..config import ExperimentConfig
from ..paths import cache_root
from ..results import Run, RunResult

#: Gallery categories: (true label, decided defective).
GALLERY = {"true positives": (1, True), "false negatives": (1, False), "false positives": (0, True),
           "true negatives": (0, False)}


class OwnPartsConfig(ExperimentConfig):
    """The chapter's folder (source, size), the training profile and the images predicted."""

    EXPERIMENT: ClassVar[str] = "own-parts"
    PROFILES: ClassVar[dict] = {
        "smoke": {"source": "synthetic", "n_train": 48, "n_test": 24, "train_profile": "smoke"},
        "converged": {"source": "kolektorsdd", "n_train": 100, "n_test": 60, "train_profile": "converged"},
        "paper": {"source": "kolektorsdd", "n_train": 100, "n_test": 60, "train_profile": "converged"},
    }

    #: ``kolektorsdd`` or ``synthetic``: where the folder's images come from.
    source: str
    #: Images in the folder (whole parts, about this many) and images of other parts predicted.
    n_train: int = Field(ge=10)
    n_test: int = Field(ge=2)
    #: The recipe the model is trained with (:func:`defectlib.deploy.train.train_config`).
    train_profile: str
    #: Images per gallery category.
    gallery_size: int = Field(default=2, ge=0)


def folders_root() -> Path:
    return cache_root() / "own-parts" / "folders"


def model_dir(current: Run) -> Path:
    """Where the chapter's model directory lives: ``<cache>/own-parts/models/<run key>``."""
    return cache_root() / "own-parts" / "models" / current.key


def gallery_rows(table: pd.DataFrame, threshold: float, size: int) -> list[int]:
    """Up to ``size`` rows of each :data:`GALLERY` category, the most confident first.

    Examples
    --------
    >>> t = pd.DataFrame({"label": [1, 1, 0, 0], "score": [0.95, 0.2, 0.97, 0.1]})
    >>> gallery_rows(t, 0.9, 1)
    [0, 1, 2, 3]
    """
    rows = []
    for label, defective in GALLERY.values():
        part = table[(table["label"] == label) & ((table["score"] >= threshold) == defective)]
        rows += part.sort_values("score", ascending=not defective).index[:size].tolist()
    return rows


def run(cfg: OwnPartsConfig, *, progress: bool = True) -> RunResult:
    """The chapter's run: read from the results cache, or made (folder, training, prediction, export)."""
    from ..data.io import read_gray
    from ..metrics import image_metrics
    from .demo import demo_folders
    from .export import export_model
    from .folder import read_folder
    from .model import load_model, resize_image
    from .predict import predict_images
    from .train import train_config, train_model

    folder, test = demo_folders(cfg.source, folders_root(), n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed)
    data = read_folder(folder)
    current = Run(cfg, {"folder": data.checksum})
    if current.complete:
        return current.load()
    start = time.perf_counter()
    out = train_model(folder, model_dir(current), train_config(cfg.train_profile, seed=cfg.seed), progress=progress)
    model = load_model(out)
    paths = test["image_path"].tolist()
    table, maps = predict_images(model, paths, keep_maps=True)
    export = export_model(out)
    runtime_diff = {}
    for name in ("onnxruntime", "openvino"):
        other = predict_images(model, paths, runtime=name)
        runtime_diff[name] = float(np.abs(other["score"].to_numpy() - table["score"].to_numpy()).max())
    samples = pd.DataFrame({"sample_id": test["sample_id"], "group": test["group"], "label": test["label"],
                            "true_area": test["defect_area"], "score": table["score"], "decision": table["decision"],
                            "defect_area": table["defect_area"]})
    keep = gallery_rows(samples, model.threshold, cfg.gallery_size)
    size = model.input_size
    current.save_artifact("gallery", rows=np.array(keep, np.int64),
                          images=np.stack([resize_image(read_gray(paths[i]), size) for i in keep]) if keep
                          else np.zeros((0, *size), np.uint8),
                          maps=np.stack([maps[i] for i in keep]) if keep else np.zeros((0, 1, 1), np.float16))
    current.save_part("all", samples, seconds=time.perf_counter() - start)
    metrics = {"test": image_metrics(samples["label"].to_numpy(), samples["score"].to_numpy(),
                                     threshold=model.threshold),
               "validation": model.info["validation"], "data": {k: v for k, v in model.info["data"].items()
                                                               if k != "val_image_paths"},
               "training_seconds": model.info["training_seconds"], "recipe": model.info["config"],
               "export": {k: export[k] for k in ("opset", "max_abs_diff", "tolerance")} | {"images": len(export["images"])},
               "runtime_score_max_abs_diff": runtime_diff,
               "model_dir": f"<cache>/own-parts/models/{current.key}"}
    return current.finish(current.load_parts(), metrics)


def gallery(result: RunResult, category: str):
    """The stored gallery images of one :data:`GALLERY` category: ``(rows, images, maps)``."""
    label, defective = GALLERY[category]
    arrays = result.artifact("gallery")
    threshold = result.metrics["recipe"]["threshold"]
    picked = [(int(r), arrays["images"][i], arrays["maps"][i]) for i, r in enumerate(arrays["rows"])
              if result.samples.loc[int(r), "label"] == label
              and (result.samples.loc[int(r), "score"] >= threshold) == defective]
    rows = result.samples.loc[[p[0] for p in picked]].reset_index(drop=True)
    return rows, [p[1] for p in picked], [p[2] for p in picked]


__all__ = ["GALLERY", "OwnPartsConfig", "gallery", "gallery_rows", "model_dir", "run"]
