"""Score images with a model directory: one CSV row per image, and overlays on request.

Any image size is accepted: each image is read as grey levels and resized to the model's
input size as in training (:func:`defectlib.deploy.model.preprocess`). An image that cannot be
read or decoded completely gets a row with ``decision = error`` and the reason, and the others
are scored.

Columns of the table (:func:`predict_images`):

``file``
    the image as given (a folder's images are found recursively, sorted);
``score``
    the defect probability (the classifier's sigmoid);
``decision``
    ``defective`` when ``score >= threshold`` (the model's, 0.9 by default), else ``good``;
    ``error`` when the image could not be read;
``defect_area``
    pixels of the original image covered by the segmentation map above the model's map
    threshold (0.5): map cells above it, times the image pixels per cell;
``error``
    why an image could not be read (empty otherwise).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import pandas as pd

from ..data.integrity import decode_problem
from ..errors import DataError
from .folder import is_image_file
from .model import LoadedModel, preprocess
from .runtimes import runner

COLUMNS = ("file", "score", "decision", "defect_area", "error")


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """The images to score: files as given, and every image file under a folder (sorted).

    Raises
    ------
    DataError
        When nothing is given, or the folders hold no image (naming them).
    """
    found, empty = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p)
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
            found += images
            if not images:
                empty.append(str(path))
        else:
            found.append(path)  # a missing or unreadable file is reported in its row
    if empty and not found:
        raise DataError(f"no images in {', '.join(empty)} (extensions: .png .jpg .jpeg .bmp .tif .tiff)")
    if not found:
        raise DataError("no images given")
    return found


def read_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """A grey ``uint8`` image, or None and why it cannot be read (missing, truncated, not an image)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read it ({exc.strerror or exc})"
    problem = decode_problem(data)
    if problem:
        return None, re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", problem)
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE), None


def defect_area(prob: np.ndarray, threshold: float, image_shape: tuple[int, int]) -> int:
    """Pixels of an image of ``image_shape`` covered by the map cells at or above ``threshold``.

    Examples
    --------
    >>> defect_area(np.array([[0.9, 0.1], [0.6, 0.2]]), 0.5, (80, 40))
    1600
    """
    cells = int((np.asarray(prob) >= threshold).sum())
    return int(round(cells * image_shape[0] * image_shape[1] / prob.size))


def overlay(image: np.ndarray, prob: np.ndarray, threshold: float) -> np.ndarray:
    """The image in grey with the segmentation map over it (BGR ``uint8``, the image's size):
    red by probability, and the outline of the cells at or above ``threshold`` in yellow."""
    height, width = image.shape[:2]
    heat = cv2.resize(prob.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    base = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR).astype(np.float32)
    alpha = 0.6 * np.clip(heat, 0, 1)[..., None]
    red = np.zeros_like(base)
    red[..., 2] = 255
    out = (base * (1 - alpha) + red * alpha).astype(np.uint8)
    region = cv2.resize((prob >= threshold).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (0, 255, 255), max(1, round(min(height, width) / 200)))
    return out


def _overlay_name(path: Path, taken: set[str]) -> str:
    name, n = f"{path.stem}.png", 1
    while name in taken:
        n += 1
        name = f"{path.stem}-{n}.png"
    taken.add(name)
    return name


def predict_images(model: LoadedModel, paths: Iterable[str | Path], *, runtime: str = "torch",
                   overlays: str | Path | None = None, threads: int | None = None,
                   keep_maps: bool = False):
    """Score every image; the table of :data:`COLUMNS`, and the maps with ``keep_maps``.

    Parameters
    ----------
    model : LoadedModel
        A model directory (:func:`defectlib.deploy.model.load_model`).
    paths : iterable of path-like
        Image files (:func:`list_images` expands folders).
    runtime : str
        ``torch``, ``onnxruntime`` or ``openvino`` (the last two need ``model.onnx``).
    overlays : path-like, optional
        Folder for one overlay PNG per image (:func:`overlay`), named after the image.
    keep_maps : bool
        Also return ``{row: map}``, each image's segmentation probabilities ``(h, w)``.
    """
    size = model.input_size
    run = runner(runtime, model, threads=threads, shape=(1, 1, *size))
    out_dir = Path(overlays) if overlays is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    rows, maps, taken = [], {}, set()
    for i, path in enumerate(map(Path, paths)):
        image, problem = read_image(path)
        if image is None:
            rows.append({"file": str(path), "score": np.nan, "decision": "error", "defect_area": -1, "error": problem})
            continue
        score, prob = run(preprocess(image, size))
        score, prob = float(score.reshape(-1)[0]), prob.reshape(prob.shape[-2:])
        rows.append({"file": str(path), "score": score,
                     "decision": "defective" if score >= model.threshold else "good",
                     "defect_area": defect_area(prob, model.map_threshold, image.shape), "error": ""})
        if keep_maps:
            maps[i] = prob.astype(np.float16)
        if out_dir is not None:
            cv2.imwrite(str(out_dir / _overlay_name(path, taken)), overlay(image, prob, model.map_threshold))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return (table, maps) if keep_maps else table


def errors_message(table: pd.DataFrame) -> str | None:
    """One line per image that could not be scored (``file: why``), after a count; None if none."""
    bad = table[table["decision"] == "error"]
    if bad.empty:
        return None
    lines = [f"{len(bad)} of {len(table)} images could not be scored (the others were):"]
    return "\n".join(lines + [f"  {r.file}: {r.error}" for r in bad.itertuples()])


__all__ = ["COLUMNS", "defect_area", "errors_message", "list_images", "overlay", "predict_images", "read_image"]
