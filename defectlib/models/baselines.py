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
    smp's DeepLabV3Plus, ResNet-50 encoder, output stride 16, ASPP rates (12, 24, 36). The
    decoder output (256 channels at 1/4) is average-pooled 2×2 (``ceil_mode``) to 1/8: that is
    ``features``; ``logits`` is a 1×1 convolution (with bias) on it. Two changes to smp:

    * the decoder's fixed ×4 upsampling of the ASPP output is replaced by a bilinear resize
      (``align_corners=True`` as smp) to the size of the 1/4 skip, so inputs whose size is not
      a multiple of 16 work (identical to smp's decoder when it is);
    * the BatchNorm of ASPP's image-pooling branch (which normalises a 1×1 map) is replaced by a
      bias on its 1×1 convolution: with the paper's batch size 1 that BatchNorm sees one value
      per channel and cannot be trained (PyTorch raises).

    ImageNet weights, the paper's "pre-trained", are used when a torchvision ResNet-50
    ``state_dict`` is on disk: ``weights_path`` if given, else
    ``<cache_root>/weights/resnet50-imagenet.pth``, else torch hub's
    ``<hub>/checkpoints/resnet50-*.pth``. They load into the smp encoder (same keys as
    torchvision's ResNet; ``fc.*`` dropped; ``conv1`` summed over the RGB channels for the
    one-channel input, as smp does for pretrained encoders). ``model.pretrained`` is then the
    file's path, else ``None`` (trained from scratch; the book must say so). Inputs should be
    normalised like ImageNet's grey level when the weights are used (a data-side concern).
"""

from __future__ import annotations

import os
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .lightweight import SegOutput

__all__ = [
    "UNetSegNet",
    "DeepLabV3PlusSegNet",
    "unet_segnet",
    "deeplabv3plus_segnet",
    "find_resnet50_weights",
    "load_resnet50_into_encoder",
]

RESNET50_CACHE_NAME = "resnet50-imagenet.pth"


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


def find_resnet50_weights(weights_path: str | os.PathLike | None = None) -> Path | None:
    """The ImageNet ResNet-50 state_dict to use: ``weights_path``, the project cache, torch hub, or None."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"ResNet-50 weights not found: {path}")
        return path
    candidates: list[Path] = []
    try:
        from ..paths import cache_root

        candidates.append(cache_root() / "weights" / RESNET50_CACHE_NAME)
    except Exception:  # no project root (e.g. the package used outside the repository)
        pass
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    candidates.extend(sorted(hub.glob("resnet50-*.pth")))
    return next((c for c in candidates if c.is_file()), None)


def load_resnet50_into_encoder(encoder: nn.Module, path: str | os.PathLike) -> None:
    """Load a torchvision ResNet-50 state_dict into an smp ResNet encoder (strict, fc dropped).

    ``conv1.weight`` is summed over its input channels when the encoder takes fewer channels
    than the checkpoint (3 -> 1 for grey images).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    conv1 = state.get("conv1.weight")
    target = encoder.conv1.weight
    if conv1 is not None and conv1.shape[1] != target.shape[1]:
        if target.shape[1] != 1:
            raise ValueError(f"cannot adapt conv1 from {conv1.shape[1]} to {target.shape[1]} input channels")
        state["conv1.weight"] = conv1.sum(dim=1, keepdim=True)
    nn.Module.load_state_dict(encoder, state, strict=True)


class _BiasedPooling(nn.Sequential):
    """ASPP's image-pooling branch without its BatchNorm (trainable at batch size 1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class DeepLabV3PlusSegNet(nn.Module):
    """smp DeepLabV3+ (ResNet-50), decoder output pooled to 1/8; returns ``SegOutput``."""

    def __init__(
        self,
        *,
        weights_path: str | os.PathLike | None = None,
        find_weights: bool = True,
        encoder_name: str = "resnet50",
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        full = smp.DeepLabV3Plus(
            encoder_name=encoder_name, encoder_weights=None, in_channels=in_channels, classes=1
        )
        self.encoder = full.encoder
        self.decoder = full.decoder
        aspp = self.decoder.aspp[0]
        pooling = aspp.convs[-1]
        aspp.convs[-1] = _BiasedPooling(pooling[1].in_channels, pooling[1].out_channels)
        self.feature_channels = self.decoder.block2[0][1].out_channels  # 256
        self.head = nn.Conv2d(self.feature_channels, 1, kernel_size=1)

        path = find_resnet50_weights(weights_path) if (weights_path is not None or find_weights) else None
        if path is not None:
            load_resnet50_into_encoder(self.encoder, path)
        self.pretrained: str | None = str(path) if path is not None else None

    def decode(self, features: list[Tensor]) -> Tensor:
        """smp's DeepLabV3PlusDecoder.forward, with a resize to the skip's size instead of a fixed ×4."""
        d = self.decoder
        high_res = d.block1(features[2])
        aspp = F.interpolate(d.aspp(features[-1]), size=high_res.shape[-2:], mode="bilinear", align_corners=True)
        return d.block2(torch.cat([aspp, high_res], dim=1))

    def forward(self, x: Tensor) -> SegOutput:
        quarter = self.decode(self.encoder(x))
        features = F.avg_pool2d(quarter, kernel_size=2, stride=2, ceil_mode=True)
        return SegOutput(features, self.head(features))


# ---------------------------------------------------------------------------------- factories


def unet_segnet(**kwargs) -> UNetSegNet:
    """U-Net baseline (ResNet-34 encoder, random normal init), features 128 ch at 1/8."""
    return UNetSegNet(**kwargs)


def deeplabv3plus_segnet(*, weights_path: str | os.PathLike | None = None, **kwargs) -> DeepLabV3PlusSegNet:
    """DeepLabv3+ baseline (ResNet-50), features 256 ch at 1/8; ImageNet weights if found locally."""
    return DeepLabV3PlusSegNet(weights_path=weights_path, **kwargs)
