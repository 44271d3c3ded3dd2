"""Segmentation and classification networks of seed 000, behind one registry.

Every segmentation network takes a (N, 1, H, W) grey image and returns :class:`SegOutput`
``(features, logits)`` at 1/8 resolution (ceil(H/8) × ceil(W/8)); ``model.feature_channels``
is the number of feature channels, so its classifier is
``DefectClassifier(in_channels=model.feature_channels + 1)``.

=================  ==============================================  ========================
name               network                                          feature_channels
=================  ==============================================  ========================
``proposed``       :class:`~.lightweight.LightweightSegNet` (paper)  144
``deeplabv3plus``  DeepLabv3+, ResNet-50 (smp), cut at 1/8           256
``unet``           U-Net, ResNet-34 (smp), cut at 1/8                128
=================  ==============================================  ========================
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import ConfigError
from .baselines import deeplabv3plus_segnet, unet_segnet
from .classifier import DefectClassifier
from .lightweight import LightweightSegNet, SegOutput, lightweight_segnet

__all__ = [
    "SegOutput",
    "SEGMENTATION_MODELS",
    "build_segnet",
    "DefectClassifier",
    "LightweightSegNet",
    "lightweight_segnet",
    "deeplabv3plus_segnet",
    "unet_segnet",
]

SEGMENTATION_MODELS: dict[str, Callable[..., nn.Module]] = {
    "proposed": lightweight_segnet,
    "deeplabv3plus": deeplabv3plus_segnet,
    "unet": unet_segnet,
}


def build_segnet(name: str, **kwargs) -> nn.Module:
    """The segmentation network registered as ``name`` (see :data:`SEGMENTATION_MODELS`).

    Raises :class:`~defectlib.errors.ConfigError` (a ``ValueError``) for an unknown name.
    """
    try:
        factory = SEGMENTATION_MODELS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown segmentation network {name!r}; choose one of: {', '.join(SEGMENTATION_MODELS)}"
        ) from None
    return factory(**kwargs)
