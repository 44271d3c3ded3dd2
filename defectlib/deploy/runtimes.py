"""The detector under three runtimes: PyTorch, onnxruntime and OpenVINO.

Each runtime is a function ``run(image) -> (score, map)`` on a ``(N, 1, H, W)`` float32 array
(:func:`defectlib.deploy.model.preprocess`), returning NumPy arrays: the defect probability
``(N,)`` and the segmentation map's probabilities ``(N, 1, H/8, W/8)``.

``torch`` runs the model directory's weights with BatchNorm folded into the convolutions
(:func:`defectlib.models.fuse.inference_model`), as the study predicts; ``onnxruntime`` and
``openvino`` run the exported ``model.onnx`` (``defectlib export MODEL --onnx``) on the CPU:
onnxruntime for portability, OpenVINO for speed on Intel and AMD CPUs. ``threads`` sets each
runtime's intra-op threads (None: the runtime's default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError, UnavailableError
from . import RUNTIMES
from .model import ONNX, LoadedModel

Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _missing(package: str) -> UnavailableError:
    return UnavailableError(f"the {package} package is not installed; install the deploy extra: "
                            "pip install -e '.[deploy]'")


def onnx_file(model: LoadedModel) -> Path:
    """The model directory's ONNX file; a :class:`DataError` saying how to make it if missing."""
    path = model.folder / ONNX
    if not path.is_file():
        raise DataError(f"{model.folder}: no {ONNX} in it; export it first: defectlib export {model.folder} --onnx")
    return path


def torch_runner(model: LoadedModel, *, threads: int | None = None) -> Runner:
    """The PyTorch path: the detector with BatchNorm folded, channels-last, under inference mode."""
    import torch

    from ..models.fuse import inference_model

    if threads:
        torch.set_num_threads(threads)
    fused = inference_model(model.detector)

    def run(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            score, prob = fused(torch.from_numpy(np.ascontiguousarray(image, np.float32)))
        return score.numpy(), prob.contiguous().numpy()

    return run


def onnxruntime_runner(path: str | Path, *, threads: int | None = None) -> Runner:
    """onnxruntime's CPU session of an ONNX file (all graph optimisations on)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise _missing("onnxruntime") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        score, prob = session.run(None, {name: np.ascontiguousarray(image, np.float32)})
        return score, prob

    return run


def openvino_runner(path: str | Path, *, threads: int | None = None, shape: tuple[int, ...] | None = None) -> Runner:
    """OpenVINO's CPU plugin on an ONNX file, compiled for one input ``shape`` when given
    (static shapes are OpenVINO's fast path), else for any shape (recompiled per new shape)."""
    try:
        import openvino as ov
    except ImportError:
        raise _missing("openvino") from None
    core = ov.Core()
    source = core.read_model(str(path))
    config = {"INFERENCE_NUM_THREADS": int(threads)} if threads else {}
    config["INFERENCE_PRECISION_HINT"] = "f32"  # as PyTorch computes; no bf16/f16 on CPUs that have them
    compiled: dict[tuple[int, ...], object] = {}

    def compile_for(dims: tuple[int, ...]):
        if dims not in compiled:
            model = source.clone()
            model.reshape({model.inputs[0].get_any_name(): list(dims)})
            compiled[dims] = core.compile_model(model, "CPU", config)
        return compiled[dims]

    if shape is not None:
        compile_for(tuple(shape))

    def run(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image = np.ascontiguousarray(image, np.float32)
        result = compile_for(tuple(image.shape))(image)
        return result[0], result[1]

    return run


def runner(name: str, model: LoadedModel, *, threads: int | None = None,
           shape: tuple[int, ...] | None = None) -> Runner:
    """The runner of runtime ``name`` (one of :data:`RUNTIMES`) for a model directory.

    Raises
    ------
    DataError
        For an unknown runtime, or an ONNX runtime without an exported ``model.onnx``.
    UnavailableError
        When the runtime's package is not installed.
    """
    if name == "torch":
        return torch_runner(model, threads=threads)
    if name == "onnxruntime":
        return onnxruntime_runner(onnx_file(model), threads=threads)
    if name == "openvino":
        return openvino_runner(onnx_file(model), threads=threads, shape=shape)
    raise DataError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}")


__all__ = ["RUNTIMES", "onnx_file", "onnxruntime_runner", "openvino_runner", "runner", "torch_runner"]
