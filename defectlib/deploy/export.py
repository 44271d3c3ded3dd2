"""Export a model directory to ONNX, checked against PyTorch on real images.

The exported graph is the whole detector (:class:`~defectlib.deploy.model.Detector`): input
``image`` ``(N, 1, H, W)`` float32 in [0, 1] (any N, H, W; H and W multiples of 8 give the
map exactly 1/8 of the input), outputs ``score`` ``(N,)`` and ``map`` ``(N, 1, H/8, W/8)``.
BatchNorm is folded into the convolutions first (:func:`defectlib.models.fuse.inference_model`),
opset 17 (TorchScript exporter).

The check runs real images (by default the model's validation images, else ``check``) through
the PyTorch model as trained (eval mode, BatchNorm not folded) and through the ONNX file under
onnxruntime and OpenVINO, and records the largest absolute difference of the score and of the
map for each runtime in ``onnx.json``; above :data:`TOLERANCE` the export is refused.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import atomic
from ..errors import DataError
from .model import ONNX, ONNX_INFO, LoadedModel, load_model, preprocess
from .predict import read_image
from .runtimes import onnxruntime_runner, openvino_runner

OPSET = 17
#: Largest absolute difference of a score or map probability accepted between PyTorch and a runtime.
TOLERANCE = 1e-4
#: Validation images used for the check by default.
CHECK_IMAGES = 8


def export_onnx(model: LoadedModel, path: str | Path, *, opset: int = OPSET) -> Path:
    """Write the detector with BatchNorm folded as an ONNX file (checked by ``onnx.checker``)."""
    import onnx
    import torch

    from ..models.fuse import inference_model

    fused = inference_model(model.detector)
    example = torch.from_numpy(np.zeros((1, 1, *model.input_size), np.float32))
    path = Path(path)
    with atomic.atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on shape checks and deprecations
        torch.onnx.export(fused, (example,), str(tmp), opset_version=opset, dynamo=False,
                          input_names=["image"], output_names=["score", "map"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "score": {0: "batch"},
                                        "map": {0: "batch", 2: "map_height", 3: "map_width"}})
        onnx.checker.check_model(str(tmp))
    return path


def check_images(model: LoadedModel, given: Iterable[str | Path] | None = None, *, limit: int = CHECK_IMAGES
                 ) -> list[tuple[Path, np.ndarray]]:
    """Real images to check an export on: ``given``, else up to ``limit`` of the model's
    validation images that still exist; only those that decode.

    Raises
    ------
    DataError
        When there are none.
    """
    if given:
        from .predict import list_images

        paths = list_images(given)
    else:
        paths = [Path(p) for p in model.info["data"].get("val_image_paths", [])]
        paths = [p for p in paths if p.is_file()][:limit]
    images = [(p, image) for p, (image, _) in ((p, read_image(p)) for p in paths) if image is not None]
    if not images:
        raise DataError(f"{model.folder}: no real image to check the export on (its validation images are gone); "
                        "give some with --check IMAGES")
    return images


def max_differences(reference, candidate, inputs: list[np.ndarray]) -> dict[str, float]:
    """Largest absolute differences of score and map between two runners over ``inputs``.

    Examples
    --------
    >>> a = lambda x: (x.sum(axis=(1, 2, 3)), x)
    >>> b = lambda x: (x.sum(axis=(1, 2, 3)) + 0.5, x)
    >>> max_differences(a, b, [np.zeros((1, 1, 2, 2), np.float32)])
    {'score': 0.5, 'map': 0.0}
    """
    score = prob = 0.0
    for x in inputs:
        (s0, m0), (s1, m1) = reference(x), candidate(x)
        score = max(score, float(np.abs(np.asarray(s0, np.float64) - s1).max()))
        prob = max(prob, float(np.abs(np.asarray(m0, np.float64) - m1).max()))
    return {"score": score, "map": prob}


def pytorch_reference(model: LoadedModel):
    """The model as trained: eval mode, BatchNorm not folded, float32."""
    import torch

    def run(x: np.ndarray):
        with torch.no_grad():
            score, prob = model.detector.eval()(torch.from_numpy(x))
        return score.numpy(), prob.numpy()

    return run


def export_model(folder: str | Path, *, check: Iterable[str | Path] | None = None, opset: int = OPSET,
                 tolerance: float = TOLERANCE) -> dict:
    """Export a model directory to ``model.onnx`` and check it; the record written to ``onnx.json``.

    Returns
    -------
    dict
        ``file``, ``opset``, ``images`` (the check images), ``max_abs_diff``
        (``{runtime: {"score": ..., "map": ...}}``), ``tolerance``, ``created_utc``.

    Raises
    ------
    DataError
        When a runtime differs from PyTorch by more than ``tolerance`` (the ONNX file is
        removed), or there is no real image to check on.
    """
    model = load_model(folder)
    images = check_images(model, check)
    path = export_onnx(model, model.folder / ONNX, opset=opset)
    inputs = [preprocess(image, model.input_size) for _, image in images]
    reference = pytorch_reference(model)
    diffs = {"onnxruntime": max_differences(reference, onnxruntime_runner(path), inputs),
             "openvino": max_differences(reference, openvino_runner(path, shape=(1, 1, *model.input_size)), inputs)}
    worst = max(v for d in diffs.values() for v in d.values())
    if not worst <= tolerance:
        path.unlink(missing_ok=True)
        raise DataError(f"{folder}: the exported model differs from PyTorch by {worst:.3g} (tolerance {tolerance:g}) "
                        f"on {len(images)} images; not exported ({diffs})")
    record = {"file": ONNX, "opset": opset, "batchnorm_folded": True, "input": ["batch", 1, "height", "width"],
              "images": [str(p) for p, _ in images], "max_abs_diff": diffs, "tolerance": tolerance,
              "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    atomic.write_json(model.folder / ONNX_INFO, record)
    return record


__all__ = ["CHECK_IMAGES", "OPSET", "TOLERANCE", "check_images", "export_model", "export_onnx", "max_differences",
           "pytorch_reference"]
