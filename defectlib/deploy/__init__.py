"""Use the study's detector on one's own parts: an image-folder dataset, training to a model
directory, prediction with overlays, ONNX export, and other runtimes (onnxruntime, OpenVINO).

Modules: :mod:`.folder` (the folder layout and its checks), :mod:`.model` (the model
directory), :mod:`.train`, :mod:`.predict`, :mod:`.export` (ONNX and the runtimes),
:mod:`.bench` (the runtimes side by side), :mod:`.cli` (``defectlib train``, ``predict``,
``export``, ``bench-runtimes``).
"""

#: Profiles of the study a model can be trained with (``paper`` counts epochs of the study's data).
TRAIN_PROFILES = ("smoke", "converged")
#: Seed 000's segmentation networks a model can be built on (the proposed one by default).
NETWORKS = ("proposed", "deeplabv3plus", "unet")
#: Where a model can run: PyTorch, or the exported ONNX file under onnxruntime or OpenVINO.
RUNTIMES = ("torch", "onnxruntime", "openvino")
