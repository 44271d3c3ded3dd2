"""DeepLabv3+ (ResNet-50) as the study uses it, and the local ResNet-50 ImageNet weights.

One wrapper, :class:`DeepLabV3Plus`, serves both papers: seed 004 compares against it at full
resolution (``seg004/deeplabv3plus``), seed 000 cuts it at 1/8 as a baseline
(:class:`~defectlib.models.seg000_baselines.DeepLabV3PlusEighth`), and seed 004's improved
network (:mod:`defectlib.models.seg004_improved`) is built from the same parts
(:func:`smp_deeplabv3plus`).

The network is ``segmentation_models_pytorch``'s ``DeepLabV3Plus`` with its defaults
(``encoder_weights=None``: nothing is ever downloaded): ResNet-50 encoder at output stride 16
(layer 4 dilated), ASPP with rates (12, 24, 36) and separable convolutions, 256 decoder
channels, 48-channel projection of the 1/4 low-level features, a 1×1 convolution to one logit
at 1/4, upsampled bilinearly to the input size (DeepLabv3+'s "two interpolation" steps).
Two changes to smp:

* the fixed ×4 upsamplings are replaced by bilinear resizes *to the target size* (the 1/4 skip,
  then the input; ``align_corners=True`` as smp), so inputs whose size is not a multiple of 16
  work (identical to smp's when it is);
* the BatchNorm of ASPP's image-pooling branch (which normalises a 1×1 map, one value per
  channel and image) is replaced by a bias on its 1×1 convolution: at batch size 1 that
  BatchNorm cannot be trained (PyTorch raises).

ImageNet weights of ResNet-50 load into the encoder only when asked (``find_weights=True`` or
a ``weights_path``) and found on disk (:func:`find_resnet50_weights`): ``weights_path`` if
given, else ``<cache_root>/weights/resnet50-imagenet.pth``, else torch hub's
``<hub>/checkpoints/resnet50-*.pth``. ``model.pretrained`` is then the file's path, else
``None`` (trained from scratch; the book says so).
"""

from __future__ import annotations

import os
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DeepLabV3Plus",
    "deeplabv3plus",
    "find_resnet50_weights",
    "load_resnet50_into_encoder",
    "load_weights",
    "resize",
    "smp_deeplabv3plus",
]

RESNET50_CACHE_NAME = "resnet50-imagenet.pth"
#: Output stride of the ResNet-50 backbone (layer 4 dilated), as in DeepLabv3+.
OUTPUT_STRIDE = 16


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


def load_weights(encoder: nn.Module, weights_path: str | os.PathLike | None, find_weights: bool) -> str | None:
    """Load ImageNet weights into ``encoder`` when asked and found; the file's path, else None."""
    path = find_resnet50_weights(weights_path) if (weights_path is not None or find_weights) else None
    if path is not None:
        load_resnet50_into_encoder(encoder, path)
    return str(path) if path is not None else None


def resize(x: Tensor, size, *, align_corners: bool = False) -> Tensor:
    """Bilinear resize of ``x`` to ``size``; ``x`` itself if it has that size already."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class _BiasedPooling(nn.Sequential):
    """ASPP's image-pooling branch without its BatchNorm (trainable at batch size 1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return resize(super().forward(x), x.shape[-2:])


def smp_deeplabv3plus(in_channels: int = 1) -> smp.DeepLabV3Plus:
    """smp's DeepLabV3Plus (ResNet-50, stride 16, one class, random init) with the biased pooling branch."""
    full = smp.DeepLabV3Plus(encoder_name="resnet50", encoder_weights=None, in_channels=in_channels,
                             classes=1, encoder_output_stride=OUTPUT_STRIDE)
    aspp = full.decoder.aspp[0]
    pooling = aspp.convs[-1]
    aspp.convs[-1] = _BiasedPooling(pooling[1].in_channels, pooling[1].out_channels)
    return full


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ (ResNet-50, output stride 16), one logit per pixel at the input's resolution.

    :meth:`decode` gives the 256-channel decoder output at 1/4, which subclasses may read out
    differently (seed 000 cuts it at 1/8).

    Examples
    --------
    >>> model = DeepLabV3Plus().eval()
    >>> with torch.no_grad():
    ...     model(torch.zeros(1, 1, 64, 96)).shape
    torch.Size([1, 1, 64, 96])
    """

    #: The whole image is both the input and the output (no local branch).
    supports_crop = False

    def __init__(self, *, weights_path: str | os.PathLike | None = None, find_weights: bool = False,
                 in_channels: int = 1) -> None:
        super().__init__()
        full = smp_deeplabv3plus(in_channels)
        self.encoder = full.encoder
        self.decoder = full.decoder
        self.feature_channels = full.decoder.block2[0][1].out_channels  # 256
        self.head = full.segmentation_head[0]  # the 1×1 convolution (smp's ×4 upsampling dropped)
        self.pretrained = load_weights(self.encoder, weights_path, find_weights)

    def decode(self, x: Tensor) -> Tensor:
        """The decoder's 256-channel features at 1/4 of ``x``'s size."""
        features = self.encoder(x)
        d = self.decoder
        low = d.block1(features[2])
        deep = resize(d.aspp(features[-1]), low.shape[-2:], align_corners=True)
        return d.block2(torch.cat([deep, low], dim=1))

    def forward(self, x: Tensor) -> Tensor:
        return resize(self.head(self.decode(x)), x.shape[-2:], align_corners=True)


def deeplabv3plus(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ (ResNet-50, smp), 1 input channel, 1 class, full-resolution logits."""
    return DeepLabV3Plus(**kwargs)
