"""Train the study's detector on one's own images and write a model directory.

The recipe is the study's (:class:`~defectlib.experiments.seg000.Seg000Config`): by default
the ``converged`` profile of the proposed network (input 352×128, its segmentation and
classifier steps and peak learning rates, warm-up and cosine decay, batch 1, threshold 0.9),
read from that config so the two never drift apart; ``smoke`` is its few-step version for
tests. A fifth of the parts is held out for validation (by part, stratified by
class: :func:`defectlib.experiments.common.fold_split`), scored every ``eval_every`` steps and
at the end. Training checkpoints into ``<model>/.checkpoints/`` every few minutes, so a stopped
``defectlib train`` continues where it stopped when run again with the same data, config and
output folder.

The training itself is the study's (:func:`defectlib.training.seg000.train_two_stages`).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from .. import atomic
from ..config import ExperimentConfig
from ..errors import ConfigError, DataError
from . import NETWORKS, TRAIN_PROFILES
from .model import INFO, NORMALISATION, OptionalMaskDataset, build_networks, read_info, save_model

#: The config fields of the study's recipe that a model is trained with.
RECIPE_FIELDS = ("input_size", "seg_steps", "clf_steps", "lr_seg", "lr_clf", "warmup", "batch_size", "threshold",
                 "map_threshold", "eval_every", "val_fraction")
CHECKPOINTS = ".checkpoints"


def study_recipe(profile: str, network: str = "proposed") -> dict[str, Any]:
    """The study's recipe for ``network`` under ``profile``: the :data:`RECIPE_FIELDS` of its
    :class:`~defectlib.experiments.seg000.Seg000Config`.

    Examples
    --------
    >>> from defectlib.experiments.seg000 import SEG_STEPS
    >>> r = study_recipe("converged")
    >>> r["input_size"], r["seg_steps"] == SEG_STEPS["proposed"], r["lr_seg"], r["threshold"]
    ([352, 128], True, 0.01, 0.9)
    """
    from ..experiments.seg000 import Seg000Config

    if profile not in TRAIN_PROFILES:
        raise ConfigError(f"unknown profile {profile!r} for training a model; choose one of {', '.join(TRAIN_PROFILES)}")
    cfg = Seg000Config.from_profile(profile, model=network)
    return {name: getattr(cfg, name) for name in RECIPE_FIELDS}


class TrainConfig(ExperimentConfig):
    """How a model is trained: the network and the study's recipe (overridable field by field)."""

    EXPERIMENT: ClassVar[str] = "own-parts-model"
    PROFILES: ClassVar[dict] = {p: study_recipe(p) for p in TRAIN_PROFILES}

    network: str = "proposed"
    input_size: list[int] = Field(min_length=2, max_length=2)
    seg_steps: int = Field(ge=1)
    clf_steps: int = Field(ge=1)
    lr_seg: float = Field(gt=0)
    lr_clf: float = Field(gt=0)
    warmup: float = Field(default=0.1, ge=0, lt=1)
    batch_size: int = Field(default=1, ge=1)
    threshold: float = Field(default=0.9, gt=0, lt=1)
    map_threshold: float = Field(default=0.5, gt=0, lt=1)
    eval_every: int = Field(default=250, ge=0)
    val_fraction: float = Field(default=0.2, gt=0, lt=0.5)


def train_config(profile: str = "converged", network: str = "proposed", **overrides) -> TrainConfig:
    """The config of ``network`` under ``profile`` with ``overrides`` (None: the recipe's value).

    Raises
    ------
    ConfigError
        For an unknown profile, network or field, or a value out of range.

    Examples
    --------
    >>> train_config("smoke", seg_steps=5).seg_steps, train_config("converged", "unet").lr_seg
    (5, 0.01)
    """
    if network not in NETWORKS:
        raise ConfigError(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")
    return TrainConfig.from_profile(profile, **{**study_recipe(profile, network), "network": network, **{
        k: v for k, v in overrides.items() if v is not None}})


def validation_split(table: pd.DataFrame, *, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and validation rows: ``val_fraction`` of the parts held out, by part and
    stratified by class (the study's carving, :func:`~defectlib.experiments.common.fold_split`).

    Raises
    ------
    DataError
        When the validation parts hold no defective or no good image.
    """
    from ..experiments.common import fold_split

    with warnings.catch_warnings():  # scikit-learn notes a class with fewer images than splits
        warnings.simplefilter("ignore", UserWarning)
        data = fold_split(table, np.ones(len(table), np.int64), 0, val_fraction=val_fraction, seed=seed)
    if data.val["label"].nunique() < 2:
        raise DataError(f"the validation split ({len(data.val)} images of {data.val['group'].nunique()} parts) "
                        "holds only one class; add parts with defective and with good images")
    return data.train, data.val


def validation_metrics(labels: np.ndarray, scores: np.ndarray, seg_max: np.ndarray, cfg) -> dict[str, Any]:
    """Image metrics of the validation images at the threshold, and the map maximum's AP."""
    from ..metrics import average_precision, image_metrics

    metrics = image_metrics(labels, scores, threshold=cfg.threshold)
    metrics["seg_max_ap"] = average_precision(labels, seg_max)
    return metrics


def _pct(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def model_card(info: dict[str, Any]) -> str:
    """The model card (markdown) of a model directory's ``info``: data, recipe, validation, use."""
    data, cfg, val = info["data"], info["config"], info["validation"]
    h, w = info["input_size"]
    return f"""# Defect detector: {info['network']} + classifier

Trained {info['created_utc']} with defectlib {info['packages'].get('defectlib', '?')}.

## Trained on

- source: `{data['source']}`
- {data['images']} images ({data['defective']} defective, {data['good']} good) of {data['parts']} parts
- data checksum (SHA-256 of every image's bytes and mask's pixels): `{data['checksum']}`
- training: {data['train_images']} images; validation: {data['val_images']} images of
  {data['val_parts']} parts held out by part (never trained on)

## Recipe

The study's `{cfg['profile']}` recipe: input {h}×{w} (H×W, grey, scaled to [0, 1]), segmentation
{cfg['seg_steps']} steps at peak learning rate {cfg['lr_seg']:g}, classifier {cfg['clf_steps']} steps
at {cfg['lr_clf']:g}, warm-up then cosine decay, batch {cfg['batch_size']}, seed {cfg['seed']}.

## How well it did (validation images)

| | value |
|---|---|
| images (defective) | {val['n']} ({val['n_positive']}) |
| AP of the score | {_pct(val['ap'])} |
| at threshold {info['threshold']:g}: precision / recall / F1 | {_pct(val['precision'])} / {_pct(val['recall'])} / {_pct(val['f1'])} |
| false positives / false negatives | {val['fp']} / {val['fn']} |
| AP of the segmentation map's maximum | {_pct(val['seg_max_ap'])} |

These figures come from {val['n']} images: each error moves them a lot. They say how the
model does on images like those it was trained on, taken the same way; other parts, lighting or
cameras need their own check.

## Use

```bash
defectlib predict {info.get('name', 'MODEL')} IMAGES_OR_FOLDER --out scores.csv --overlays overlays/
defectlib export {info.get('name', 'MODEL')} --onnx
```

An image is defective when its score is at least {info['threshold']:g}.
"""


def _run_state(cfg: TrainConfig, checksum: str) -> dict[str, Any]:
    return {"config": cfg.to_dict(), "data_checksum": checksum}


def _check_resumable(checkpoints: Path, state: dict[str, Any]) -> None:
    marker = checkpoints / "training.json"
    if marker.is_file():
        if json.loads(marker.read_text()) != json.loads(atomic.to_json(state)):
            raise DataError(f"{checkpoints.parent}: holds the checkpoints of another training (other data or "
                            "settings); delete it or choose another output folder")
    atomic.write_json(marker, state)


def existing_model(out: Path, cfg: TrainConfig, checksum: str) -> bool:
    """Whether ``out`` already holds the model of this config and data (so nothing is trained).

    Raises
    ------
    DataError
        When ``out`` holds another model (other data, settings or format version).
    """
    if not (out / INFO).is_file():
        return False
    info = read_info(out)
    if info.get("config") != json.loads(atomic.to_json(cfg.to_dict())) or info["data"]["checksum"] != checksum:
        raise DataError(f"{out}: already holds a model trained on other data or with other settings; "
                        "delete it or choose another output folder")
    return True


def train_model(source: str | Path, out: str | Path, cfg: TrainConfig, *, progress: bool = True,
                log: Callable[[str], None] = print) -> Path:
    """Train a detector on ``source`` and write the model directory ``out``.

    Parameters
    ----------
    source : str or path-like
        An image folder (:mod:`defectlib.deploy.folder`) or a dataset name of the study.
    out : path-like
        The model directory (made; a stopped training in it resumes; one that holds this very
        model is returned as it is).
    cfg : TrainConfig
        The recipe (:func:`train_config`).

    Returns
    -------
    Path
        ``out``.
    """
    from ..experiments.common import device as _device
    from ..seeding import seed_everything
    from ..results import package_versions
    from ..training import Schedule, predict, train_two_stages
    from .folder import load_training_table

    out = Path(out).absolute()
    table, checksum, where = load_training_table(source)
    if existing_model(out, cfg, checksum):
        log(f"{out}: already trained on this data with these settings")
        return out
    checkpoints = out / CHECKPOINTS
    _check_resumable(checkpoints, _run_state(cfg, checksum))
    seed_everything(cfg.seed)
    train, val = validation_split(table, val_fraction=cfg.val_fraction, seed=cfg.seed)
    size = tuple(cfg.input_size)
    train_set, val_set = OptionalMaskDataset(train, size=size), OptionalMaskDataset(val, size=size)
    log(f"training on {len(train)} images, validating on {len(val)} ({val['group'].nunique()} parts held out); "
        f"{cfg.seg_steps} + {cfg.clf_steps} steps at {size[0]}x{size[1]}")
    device = _device()
    segnet, classifier = (net.to(device) for net in build_networks(cfg.network))
    stages = train_two_stages(
        segnet, classifier, train_set, val_set,
        seg_schedule=Schedule(cfg.seg_steps, cfg.lr_seg, warmup=cfg.warmup),
        clf_schedule=Schedule(cfg.clf_steps, cfg.lr_clf, warmup=cfg.warmup),
        threshold=cfg.threshold, map_threshold=cfg.map_threshold, seed=cfg.seed, checkpoints=checkpoints,
        batch_size=cfg.batch_size, device=device, eval_every=cfg.eval_every, progress=progress)
    scores = predict(segnet, classifier, val_set, device=device, progress=False)
    labels = val["label"].to_numpy()
    metrics = validation_metrics(labels, scores["score"].to_numpy(), scores["seg_max"].to_numpy(), cfg)
    info = {
        "name": out.name, "network": cfg.network,
        "input_size": list(cfg.input_size), "normalisation": NORMALISATION, "threshold": cfg.threshold,
        "map_threshold": cfg.map_threshold, "config": cfg.to_dict(), "validation": metrics,
        "validation_curves": {"segmentation": stages.seg.evals, "classifier": stages.clf.evals},
        "data": {"source": where, "checksum": checksum, "images": len(table), "defective": int(table["label"].sum()),
                 "good": int((table["label"] == 0).sum()), "parts": int(table["group"].nunique()),
                 "train_images": len(train), "val_images": len(val), "val_parts": int(val["group"].nunique()),
                 "val_image_paths": val["image_path"].tolist()},
        "classifier_restarts": len(stages.stalled_clf),
        "training_seconds": round(stages.seconds, 1),
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "packages": package_versions(), "device": device,
    }
    save_model(out, segnet.cpu(), classifier.cpu(), info, model_card(info))
    shutil.rmtree(checkpoints, ignore_errors=True)
    return out


__all__ = ["NETWORKS", "RECIPE_FIELDS", "TRAIN_PROFILES", "TrainConfig", "existing_model", "model_card",
           "study_recipe", "train_config", "train_model", "validation_metrics",
           "validation_split"]
