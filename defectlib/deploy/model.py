"""The model directory that ``defectlib train`` writes and ``predict`` / ``export`` read.

::

    <model>/model.json      format and version, network, input size and normalisation,
                            threshold, the training config, validation metrics, the data
                            (where, how many images and parts, its checksum), packages
    <model>/weights.pt      state dicts of the segmentation network and the classifier
    <model>/MODEL_CARD.md   what it was trained on and how well it did, for a person
    <model>/model.onnx      after ``defectlib export --onnx`` (with onnx.json: the check)

A directory written by another :data:`FORMAT_VERSION` is refused with a message saying so.
The network sees a grey image resized to the input size with OpenCV's area interpolation
(as the study trains, :func:`defectlib.data.dataset.load_pair`) and scaled to [0, 1]
(:func:`preprocess`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from .. import atomic
from ..data.dataset import SurfaceDataset, load_pair
from ..data.io import read_gray
from ..errors import DataError

FORMAT = "defectlib-model"
#: Bump when the directory's layout or meaning changes; other versions are refused.
FORMAT_VERSION = 1
INFO = "model.json"
WEIGHTS = "weights.pt"
CARD = "MODEL_CARD.md"
ONNX = "model.onnx"
ONNX_INFO = "onnx.json"
#: How an image becomes the network's input (recorded in model.json).
NORMALISATION = {"colour": "grey (OpenCV IMREAD_GRAYSCALE)", "resize": "OpenCV INTER_AREA to input_size (H, W)",
                 "scale": "pixel / 255 (float32 in [0, 1])", "layout": "N x 1 x H x W"}


class Detector(nn.Module):
    """The segmentation network and its classifier as one module: image -> (score, map).

    ``forward(image)`` takes ``(N, 1, H, W)`` grey images in [0, 1] and returns the defect
    probability ``(N,)`` (sigmoid of the classifier's logit) and the segmentation map's
    probabilities ``(N, 1, H/8, W/8)``.
    """

    def __init__(self, segnet: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.segnet = segnet
        self.classifier = classifier

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        features, logits = self.segnet(image)
        return torch.sigmoid(self.classifier(features, logits).reshape(-1)), torch.sigmoid(logits)


def resize_image(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``image`` resized to ``size`` (H, W) with OpenCV's area interpolation, as the study
    resizes (None or the same size: unchanged)."""
    if size is None or image.shape[:2] == tuple(size):
        return image
    return cv2.resize(image, (int(size[1]), int(size[0])), interpolation=cv2.INTER_AREA)


def preprocess(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A grey ``uint8`` image as the network's input: ``(1, 1, H, W)`` float32 in [0, 1].

    Examples
    --------
    >>> preprocess(np.full((20, 10), 255, np.uint8), (8, 4)).shape
    (1, 1, 8, 4)
    """
    return (resize_image(image, size).astype(np.float32) / 255.0)[None, None]


class OptionalMaskDataset(SurfaceDataset):
    """A :class:`~defectlib.data.dataset.SurfaceDataset` whose rows may have no mask
    (``mask_path`` empty: a good image of an image folder), read as an all-zero mask."""

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        row = self.table.iloc[index]
        if row["mask_path"]:
            pair = load_pair(row, size=self.size, dilation=self.dilation)
        else:
            image = resize_image(read_gray(row["image_path"]), self.size)
            pair = (image, np.zeros(image.shape, np.uint8))
        if self._cache is not None:
            self._cache[index] = pair
        return pair


def build_networks(network: str) -> tuple[nn.Module, nn.Module]:
    """A fresh segmentation network of seed 000 (``proposed``, ``deeplabv3plus``, ``unet``) and its classifier."""
    from ..models import DefectClassifier, build_segnet

    segnet = build_segnet(network)
    return segnet, DefectClassifier(in_channels=segnet.feature_channels + 1)


def save_model(folder: str | Path, segnet: nn.Module, classifier: nn.Module, info: dict[str, Any], card: str) -> Path:
    """Write a model directory (weights, model.json, the card); every file atomically.

    ``info`` gets ``format``, ``format_version`` and ``weights`` added. Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(folder / WEIGHTS) as tmp:
        torch.save({"segnet": segnet.state_dict(), "classifier": classifier.state_dict()}, tmp)
    atomic.write_json(folder / INFO, {"format": FORMAT, "format_version": FORMAT_VERSION, **info, "weights": WEIGHTS})
    atomic.write_text(folder / CARD, card)
    return folder


def version_problem(info: Any) -> str | None:
    """Why a parsed model.json is not one this code reads, or None.

    Examples
    --------
    >>> version_problem({"format": FORMAT, "format_version": FORMAT_VERSION}) is None
    True
    >>> print(version_problem({"format": FORMAT, "format_version": 0}))
    written in model-directory format version 0; this defectlib reads version 1 only: train it again with this version (defectlib train), or use the defectlib that wrote it
    """
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        return f"not a defectlib model directory ({INFO} does not say format {FORMAT!r})"
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        return (f"written in model-directory format version {version}; this defectlib reads version "
                f"{FORMAT_VERSION} only: train it again with this version (defectlib train), or use the "
                "defectlib that wrote it")
    return None


def read_info(folder: str | Path) -> dict[str, Any]:
    """The model.json of a model directory, checked for format and version.

    Raises
    ------
    DataError
        Naming the directory: no model.json, unreadable JSON, or another format version.
    """
    path = Path(folder) / INFO
    if not path.is_file():
        raise DataError(f"{folder}: not a model directory (no {INFO}); make one with defectlib train")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    problem = version_problem(info)
    if problem:
        raise DataError(f"{folder}: {problem}")
    return info


@dataclass
class LoadedModel:
    """A model directory read back: its ``info`` (model.json) and the :class:`Detector` in eval mode."""

    folder: Path
    info: dict[str, Any]
    detector: Detector

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.info["input_size"])

    @property
    def threshold(self) -> float:
        return float(self.info["threshold"])

    @property
    def map_threshold(self) -> float:
        return float(self.info["map_threshold"])


def load_model(folder: str | Path) -> LoadedModel:
    """Read a model directory: checked info and the networks with their weights.

    Raises
    ------
    DataError
        As :func:`read_info`, or when the weights are missing or do not fit the network.
    """
    folder = Path(folder)
    info = read_info(folder)
    weights = folder / info.get("weights", WEIGHTS)
    if not weights.is_file():
        raise DataError(f"{folder}: the weights ({weights.name}) are missing")
    segnet, classifier = build_networks(info["network"])
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        segnet.load_state_dict(state["segnet"])
        classifier.load_state_dict(state["classifier"])
    except (RuntimeError, KeyError, EOFError, ValueError) as exc:
        raise DataError(f"{weights}: cannot load the weights into {info['network']} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0]})") from None
    return LoadedModel(folder, info, Detector(segnet, classifier).eval())


__all__ = ["CARD", "Detector", "FORMAT", "FORMAT_VERSION", "INFO", "LoadedModel", "NORMALISATION", "ONNX",
           "ONNX_INFO", "OptionalMaskDataset", "WEIGHTS", "build_networks", "load_model", "preprocess",
           "read_info", "resize_image", "save_model", "version_problem"]
