"""The two baselines of seed 000: DeepLabv3+ (ResNet-50) and U-Net, cut at 1/8 resolution.

Both come from ``segmentation_models_pytorch`` (``in_channels=1, classes=1,
encoder_weights=None``: nothing is ever downloaded) and are wrapped so that, like the proposed
network, ``forward(x)`` returns :class:`~defectlib.models.SegOutput` ``(features, logits)`` at
1/8 resolution (the paper: the baselines "are only up-sampled to 1/8 of the original image") and
the wrapper has a ``feature_channels`` attribute (the classifier takes ``feature_channels + 1``).

U-Net (:func:`unet_segnet`)
    smp's default encoder (ResNet-34) and decoder; only the first two decoder stages are kept
    (1/32 -> 1/16 -> 1/8, 256 then 128 channels), so ``features`` is the 128-channel decoder
    output at 1/8 and ``logits`` a 1×1 convolution (with bias) on it. The three finer decoder
    stages and smp's full-resolution head are not built. Initialisation, "randomly with normal
    distribution" as in the U-Net paper: every convolution He-normal, std sqrt(2 / fan_in)
    (Ronneberger et al. 2015: "a Gaussian distribution with a standard deviation of
    sqrt(2/N), where N denotes the number of incoming nodes"), biases 0, BatchNorm 1 / 0.

DeepLabv3+ (:func:`deeplabv3plus_segnet`)
    The study's one DeepLabv3+ (:class:`~defectlib.models.deeplab.DeepLabV3Plus`: smp's
    DeepLabV3Plus, ResNet-50 encoder, output stride 16, ASPP rates (12, 24, 36)). Its decoder
    output (256 channels at 1/4) is average-pooled 2×2 (``ceil_mode``) to 1/8: that is
    ``features``; ``logits`` is the 1×1 convolution on it. ImageNet weights, the paper's
    "pre-trained", are used when found on disk (``find_weights=True`` here by default; see
    :func:`~defectlib.models.deeplab.find_resnet50_weights`); ``model.pretrained`` is then the
    file's path, else ``None`` (trained from scratch; the book must say so). Inputs should be
    normalised like ImageNet's grey level when the weights are used (a data-side concern).
"""

from __future__ import annotations

import os

import segmentation_models_pytorch as smp
import torch.nn.functional as F
from torch import Tensor, nn

from .deeplab import DeepLabV3Plus
from .seg000_proposed import SegOutput

__all__ = [
    "UNetSegNet",
    "DeepLabV3PlusEighth",
    "unet_segnet",
    "deeplabv3plus_segnet",
]


# --------------------------------------------------------------------------------------- U-Net


class UNetSegNet(nn.Module):
    """smp U-Net (ResNet-34 encoder), decoder stopped at 1/8; returns ``SegOutput``."""

    # Decoder stages kept: 1/32 -> 1/16 (256 ch), 1/16 -> 1/8 (128 ch); smp's default channels.
    DECODER_STAGES = 2

    def __init__(self, encoder_name: str = "resnet34", in_channels: int = 1) -> None:
        super().__init__()
        full = smp.Unet(encoder_name=encoder_name, encoder_weights=None, in_channels=in_channels, classes=1)
        self.encoder = full.encoder
        self.decoder = full.decoder
        self.decoder.blocks = self.decoder.blocks[: self.DECODER_STAGES]
        self.feature_channels = self.decoder.blocks[-1].conv2[0].out_channels
        self.head = nn.Conv2d(self.feature_channels, 1, kernel_size=1)
        self.pretrained = None
        self._init_normal()

    def _init_normal(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> SegOutput:
        features = self.decoder(self.encoder(x))
        return SegOutput(features, self.head(features))


# --------------------------------------------------------------------------------- DeepLabv3+


class DeepLabV3PlusEighth(DeepLabV3Plus):
    """The study's DeepLabv3+, its decoder output pooled to 1/8; returns ``SegOutput``."""

    def __init__(self, *, weights_path: str | os.PathLike | None = None, find_weights: bool = True,
                 in_channels: int = 1) -> None:
        super().__init__(weights_path=weights_path, find_weights=find_weights, in_channels=in_channels)

    def forward(self, x: Tensor) -> SegOutput:
        features = F.avg_pool2d(self.decode(x), kernel_size=2, stride=2, ceil_mode=True)
        return SegOutput(features, self.head(features))


# ---------------------------------------------------------------------------------- factories


def unet_segnet(**kwargs) -> UNetSegNet:
    """U-Net baseline (ResNet-34 encoder, random normal init), features 128 ch at 1/8."""
    return UNetSegNet(**kwargs)


def deeplabv3plus_segnet(*, weights_path: str | os.PathLike | None = None, **kwargs) -> DeepLabV3PlusEighth:
    """DeepLabv3+ baseline (ResNet-50), features 256 ch at 1/8; ImageNet weights if found locally."""
    return DeepLabV3PlusEighth(weights_path=weights_path, **kwargs)
