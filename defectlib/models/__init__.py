"""The study's networks, behind one registry (:data:`MODELS`, :func:`build_model`).

Names are ``<paper>/<network>``:

=========================  ==========================================================  =========
name                       network                                                      output
=========================  ==========================================================  =========
``seg000/proposed``        :class:`~.seg000_proposed.LightweightSegNet` (the paper's)    1/8 map
``seg000/deeplabv3plus``   :class:`~.deeplab.DeepLabV3Plus` (ResNet-50, smp), cut at 1/8  1/8 map
``seg000/unet``            U-Net, ResNet-34 (smp), cut at 1/8                            1/8 map
``rec004/dr``              ResNet-50 block detector (7×7 blocks at 224×224)              blocks
``rec004/resnet50``        ResNet-50 image classifier                                    2 logits
``seg004/deeplabv3plus``   :class:`~.deeplab.DeepLabV3Plus` (ResNet-50, smp)              full map
``seg004/improved``        the improved DeepLabv3+ (branch, no ASPP, local input)        full map
=========================  ==========================================================  =========

Seed 000's segmentation networks take a (N, 1, H, W) grey image and return :class:`SegOutput`
``(features, logits)``; ``model.feature_channels`` is the number of feature channels, so their
classifier is ``DefectClassifier(in_channels=model.feature_channels + 1)``.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import ConfigError
from .deeplab import deeplabv3plus
from .rec004 import block_detector, resnet50_classifier
from .seg000_baselines import deeplabv3plus_segnet, unet_segnet
from .seg000_classifier import DefectClassifier
from .seg000_proposed import LightweightSegNet, SegOutput, lightweight_segnet
from .seg004_improved import improved_deeplabv3plus

__all__ = [
    "MODELS",
    "SegOutput",
    "build_model",
    "build_segnet",
    "DefectClassifier",
    "LightweightSegNet",
    "lightweight_segnet",
    "deeplabv3plus_segnet",
    "unet_segnet",
]

#: Every network of the study by ``<paper>/<network>`` name.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "seg000/proposed": lightweight_segnet,
    "seg000/deeplabv3plus": deeplabv3plus_segnet,
    "seg000/unet": unet_segnet,
    "rec004/dr": block_detector,
    "rec004/resnet50": resnet50_classifier,
    "seg004/deeplabv3plus": deeplabv3plus,
    "seg004/improved": improved_deeplabv3plus,
}


def build_model(name: str, **kwargs) -> nn.Module:
    """The network registered as ``name`` (see :data:`MODELS`), built with ``kwargs``.

    Raises :class:`~defectlib.errors.ConfigError` (a ``ValueError``) for an unknown name.

    Examples
    --------
    >>> type(build_model("seg000/proposed")).__name__
    'LightweightSegNet'
    >>> build_model("seg000/segnet")
    Traceback (most recent call last):
    ...
    defectlib.errors.ConfigError: unknown network 'seg000/segnet'; choose one of: seg000/proposed, seg000/deeplabv3plus, seg000/unet, rec004/dr, rec004/resnet50, seg004/deeplabv3plus, seg004/improved
    """
    try:
        factory = MODELS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown network {name!r}; choose one of: {', '.join(MODELS)}") from None
    return factory(**kwargs)


def build_segnet(name: str, **kwargs) -> nn.Module:
    """Seed 000's segmentation network ``name`` (``proposed``, ``deeplabv3plus``, ``unet``):
    ``build_model(f"seg000/{name}", **kwargs)``."""
    return build_model(f"seg000/{name}", **kwargs)
